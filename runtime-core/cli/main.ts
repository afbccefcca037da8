#!/usr/bin/env node
/**
 * kata-resources: the command line of the runtime core.
 * Results go to stdout (text, or one JSON object with --json); progress and logs to stderr.
 */
import { KataError, isKataError } from '../../host/errors.js';
import { rootLogger } from '../../host/log.js';
import { parseArgs, stringFlag } from './args.js';
import type { SandboxView } from '../sandbox/sandbox.js';

const HELP: Record<string, string> = {
  main: `kata-resources: sandbox resources for lightweight VMs (network endpoints, virtio-fs, QEMU)

Usage:
  kata-resources sandbox up [--id ID] [--netns NAME|PATH] [--config FILE] [--json]
  kata-resources sandbox status ID [--config FILE] [--json]
  kata-resources sandbox down ID [--config FILE] [--json]
  kata-resources sandbox list [--config FILE] [--json]
  kata-resources sandbox share ID --source DIR [--name NAME] [--readonly] [--json]
  kata-resources sandbox unshare ID NAME
  kata-resources iface add ID (--link NAME | FILE | -) [--json]
  kata-resources iface del ID NAME|MAC
  kata-resources iface list ID [--json]
  kata-resources route list ID [--json]
  kata-resources route update ID FILE|-
  kata-resources exec ID [--timeout MS] -- CMD [ARGS...]
  kata-resources check [--config FILE] [--json]
  kata-resources demo [--config FILE] [--keep]
  kata-resources guest-kit [--quiet] [--json]

Every command takes --help. Logs: KATA_LOG_LEVEL (default warn), KATA_LOG_FILE.
Exit codes: 0 success, 1 failure (the message names the error code, see README), 2 usage error.`,
  sandbox: `kata-resources sandbox up|status|down|list (see kata-resources --help)`,
  'sandbox up': `kata-resources sandbox up [--id ID] [--netns NAME|PATH] [--config FILE] [--json]

Build a sandbox: take (or create) the network namespace, scan it, attach its endpoints, start
virtiofsd, boot the VM, and return once the guest has applied the network and mounted the share.
  --id ID        sandbox id (default: sb-<random>)
  --netns X      existing namespace to use (name under /run/netns, or a path); default: a new kr-<id>
  --config FILE  Kata-style configuration (default /etc/kata-resources/configuration.toml if present)
  --json         print the sandbox as one JSON object`,
  'sandbox status': `kata-resources sandbox status ID [--json]\n\nThe sandbox (state, pids, endpoints, shares) and what the guest agent reports (interfaces, routes, mounts).`,
  'sandbox down': `kata-resources sandbox down ID [--json]\n\nStop the VM and remove everything the sandbox created. Idempotent; works after a crash of the supervisor (from the persisted state).`,
  'sandbox list': `kata-resources sandbox list [--json]\n\nAll sandboxes with persisted state.`,
  'sandbox share': `kata-resources sandbox share ID --source DIR [--name NAME] [--readonly] [--json]\n\nShare a host directory into the running sandbox's virtio-fs export (as Kata shares a volume). The guest sees it under /run/kata-containers/shared/containers/<NAME>. --readonly holds inside the export (bind made read-only before it enters the shared tree).`,
  'sandbox unshare': `kata-resources sandbox unshare ID NAME\n\nRemove a share made with \`sandbox share\`.`,
  iface: `kata-resources iface add|del|list (network hotplug, in the style of kata-runtime kata-network add-iface)`,
  'iface add': `kata-resources iface add ID --link NAME [--json]
kata-resources iface add ID FILE|- [--json]

Hot-add a network interface to a running sandbox.
  --link NAME  an existing link of the sandbox's network namespace (e.g. one a CNI plugin added
               later): attached with the configured model, hot-plugged, configured in the guest,
               its routes sent
  FILE|-       a Kata agent Interface as JSON ({"name","hwAddr","mtu","IPAddresses":[{"family","address","mask"}]}):
               a new tap tap<idx>_kata is made for it
Prints the interface as the guest agent applied it.`,
  'iface del': `kata-resources iface del ID NAME|MAC\n\nHot-remove an interface (by guest name or MAC): unplug from the VM, then remove the tap and redirects.`,
  'iface list': `kata-resources iface list ID [--json]\n\nThe guest's interfaces, as the agent reports them.`,
  route: `kata-resources route list|update`,
  'route list': `kata-resources route list ID [--json]\n\nThe guest's routes, as the agent reports them.`,
  'route update': `kata-resources route update ID FILE|-\n\nSend routes (a JSON array of Kata agent Route objects, or {"Routes": [...]}) to the guest agent; routes without a gateway are applied first.`,
  exec: `kata-resources exec ID [--timeout MS] -- CMD [ARGS...]\n\nRun a command in the guest's root environment through the agent; relays its output and exit code.`,
  check: `kata-resources check [--json]\n\nHost capabilities: tools, QEMU, virtiofsd, /dev/net/tun, /dev/vhost-net, KVM (probed), kernel features (tried in a throw-away namespace). Each failure comes with a fix. Exit 1 when a required feature is missing.`,
  demo: `kata-resources demo [--keep]\n\nOn this machine: a pod namespace with a veth as a CNI plugin would make it, a sandbox on the embedded guest, what the guest sees, a ping from the guest to the host side, teardown, and a check that nothing is left.`,
  'guest-kit': `kata-resources guest-kit [--quiet] [--json]\n\nBuild (once; then cached) the embedded default guest: Debian's kernel (uncompressed for a fast PVH boot), an initramfs, and an ext4 rootfs with node and the guest agent. Prints its paths.`,
};

const out = (s: string): void => {
  process.stdout.write(`${s}\n`);
};
const err = (s: string): void => {
  process.stderr.write(`${s}\n`);
};

function printSandbox(v: SandboxView & { guest?: unknown; supervisor?: string }): void {
  out(`sandbox ${v.id}: ${v.state}${v.supervisor ? ` (supervisor ${v.supervisor})` : ''}${v.accel ? `, accel ${v.accel}` : ''}`);
  if (v.error) out(`  error: ${v.error.code}: ${v.error.message}`);
  if (v.netns) out(`  netns: ${v.netns.name ?? v.netns.path}${v.netns.created ? ' (created by the sandbox)' : ''}`);
  if (Object.keys(v.pids).length)
    out(
      `  pids: ${Object.entries(v.pids)
        .map(([k, p]) => `${k}=${p}`)
        .join(' ')}`,
    );
  for (const e of v.endpoints)
    out(`  endpoint: ${e.name} ${e.type}${e.tap ? ` -> ${e.tap}` : ''} mac ${e.mac} mtu ${e.mtu} ${e.addresses.join(' ')}`);
  for (const s of v.shares) out(`  share: ${s.tag} ${s.hostDir} -> ${s.guestMountPoint}`);
  for (const s of v.volumes ?? []) out(`  volume: ${s.source} -> ${s.guestPath}${s.readonly ? ' (read-only)' : ''}`);
  const g = v.guest as
    | {
        interfaces?: { name: string; hwAddr: string; mtu: number; IPAddresses: { address: string; mask: string }[] }[];
        routes?: { dest: string; gateway: string; device: string }[];
        mounts?: { source: string; mount_point: string; fstype: string }[];
        error?: string;
      }
    | undefined;
  if (g?.error) out(`  guest: ${g.error}`);
  for (const i of g?.interfaces ?? [])
    out(`  guest interface: ${i.name} ${i.hwAddr} mtu ${i.mtu} ${i.IPAddresses.map((a) => `${a.address}/${a.mask}`).join(' ')}`);
  for (const r of g?.routes ?? []) out(`  guest route: ${r.dest || 'default'}${r.gateway ? ` via ${r.gateway}` : ''} dev ${r.device}`);
  for (const m of g?.mounts ?? []) out(`  guest mount: ${m.source} on ${m.mount_point} (${m.fstype})`);
}

function help(key: string): boolean {
  out(HELP[key] ?? HELP.main!);
  return true;
}

async function dispatch(argv: string[]): Promise<number> {
  const log = rootLogger();
  const [cmd, sub] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') return help('main') ? 0 : 0;
  if (cmd === '--version') {
    out('kata-resources 0.1.0');
    return 0;
  }
  if (cmd === 'sandbox') {
    if (sub === undefined || sub === '--help' || sub === '-h') return help('sandbox') ? 0 : 0;
    const key = `sandbox ${sub}`;
    if (!(key in HELP))
      throw new KataError('E_INVALID_ARGUMENT', `unknown command "sandbox ${sub}" (see kata-resources --help)`, { usage: true });
    const a = parseArgs(argv.slice(2), {
      command: `kata-resources ${key}`,
      valueFlags: ['id', 'netns', 'config', 'source', 'name'],
      boolFlags: ['readonly'],
    });
    if (a.flags.help) return help(key) ? 0 : 0;
    const json = a.flags.json === true;
    const config = stringFlag(a, 'config');
    const cmds = await import('./sandbox-commands.js');
    const needId = (): string => {
      const id = a.positionals[0];
      if (!id) throw new KataError('E_INVALID_ARGUMENT', `kata-resources ${key} needs a sandbox ID`, { usage: true });
      return id;
    };
    if (sub === 'up') {
      const r = await cmds.sandboxUp(
        {
          ...(stringFlag(a, 'id') ? { id: stringFlag(a, 'id')! } : {}),
          ...(stringFlag(a, 'netns') ? { netns: stringFlag(a, 'netns')! } : {}),
          ...(config ? { config } : {}),
          progress: (m) => err(`.. ${m}`),
        },
        log,
      );
      if (json) out(JSON.stringify(r.sandbox));
      else printSandbox(r.sandbox);
      return 0;
    }
    if (sub === 'status') {
      const v = await cmds.sandboxStatus(needId(), config, log);
      if (json) out(JSON.stringify(v));
      else printSandbox(v);
      return 0;
    }
    if (sub === 'down') {
      const r = await cmds.sandboxDown(needId(), config, log);
      if (json) out(JSON.stringify(r));
      else out(r.state === 'absent' ? `sandbox ${r.id}: not found; nothing to do` : `sandbox ${r.id}: removed`);
      return 0;
    }
    if (sub === 'share') {
      const source = stringFlag(a, 'source');
      if (!source) throw new KataError('E_INVALID_ARGUMENT', 'kata-resources sandbox share needs --source DIR', { usage: true });
      const { resolve } = await import('node:path');
      const r = await cmds.sandboxShare(
        needId(),
        {
          source: resolve(source),
          readonly: a.flags.readonly === true,
          ...(stringFlag(a, 'name') ? { name: stringFlag(a, 'name')! } : {}),
        },
        config,
        log,
      );
      if (json) out(JSON.stringify(r));
      else out(`shared ${r.source} as ${r.name}${r.readonly ? ' (read-only)' : ''}: guest ${r.guestPath}`);
      return 0;
    }
    if (sub === 'unshare') {
      const name = a.positionals[1];
      if (!name) throw new KataError('E_INVALID_ARGUMENT', 'usage: kata-resources sandbox unshare ID NAME', { usage: true });
      await cmds.sandboxUnshare(needId(), name, config, log);
      if (json) out(JSON.stringify({ name, state: 'unshared' }));
      else out(`unshared ${name}`);
      return 0;
    }
    if (sub === 'list') {
      const l = await cmds.sandboxList(config, log);
      if (json) out(JSON.stringify(l));
      else if (l.length === 0) out('no sandboxes');
      else
        for (const v of l)
          out(
            `${v.id}\t${v.state}\tsupervisor ${v.supervisor}\t${v.netns?.name ?? v.netns?.path ?? '-'}\t${v.endpoints.length} endpoint(s)`,
          );
      return 0;
    }
  }
  if (cmd === 'iface' || cmd === 'route') {
    if (sub === undefined || sub === '--help' || sub === '-h') return help(cmd) ? 0 : 0;
    const key = `${cmd} ${sub}`;
    if (!(key in HELP)) throw new KataError('E_INVALID_ARGUMENT', `unknown command "${key}" (see kata-resources --help)`, { usage: true });
    const a = parseArgs(argv.slice(2), { command: `kata-resources ${key}`, valueFlags: ['config', 'link'] });
    if (a.flags.help) return help(key) ? 0 : 0;
    const [id, arg] = a.positionals;
    if (!id) throw new KataError('E_INVALID_ARGUMENT', `kata-resources ${key} needs a sandbox ID`, { usage: true });
    const config = stringFlag(a, 'config');
    const json = a.flags.json === true;
    const cmds = await import('./sandbox-commands.js');
    const readJson = async (src: string | undefined, what: string): Promise<unknown> => {
      if (!src) throw new KataError('E_INVALID_ARGUMENT', `kata-resources ${key} needs ${what} (a file, or - for stdin)`, { usage: true });
      const { readFile } = await import('node:fs/promises');
      const text =
        src === '-'
          ? await new Promise<string>((r) => {
              let d = '';
              process.stdin
                .setEncoding('utf8')
                .on('data', (c) => {
                  d += c;
                })
                .on('end', () => r(d));
            })
          : await readFile(src, 'utf8');
      try {
        return JSON.parse(text);
      } catch (e) {
        throw new KataError('E_INVALID_ARGUMENT', `${src === '-' ? 'stdin' : src}: not JSON (${(e as Error).message})`);
      }
    };
    if (key === 'iface add') {
      const link = stringFlag(a, 'link');
      const r = await cmds.ifaceAdd(id, link ? { link } : { interface: await readJson(arg, 'an Interface') }, config, log);
      out(
        json
          ? JSON.stringify(r)
          : `added ${r.name} ${r.hwAddr} mtu ${r.mtu} ${r.IPAddresses.map((x) => `${x.address}/${x.mask}`).join(' ')} at ${r.devicePath || '?'}`,
      );
      return 0;
    }
    if (key === 'iface del') {
      if (!arg) throw new KataError('E_INVALID_ARGUMENT', 'usage: kata-resources iface del ID NAME|MAC', { usage: true });
      await cmds.ifaceDel(id, arg, config, log);
      out(json ? JSON.stringify({ name: arg, state: 'removed' }) : `removed ${arg}`);
      return 0;
    }
    if (key === 'iface list') {
      const l = await cmds.ifaceList(id, config, log);
      if (json) out(JSON.stringify(l));
      else for (const i of l) out(`${i.name}\t${i.hwAddr}\tmtu ${i.mtu}\t${i.IPAddresses.map((x) => `${x.address}/${x.mask}`).join(' ')}`);
      return 0;
    }
    if (key === 'route list') {
      const l = await cmds.routeList(id, config, log);
      if (json) out(JSON.stringify(l));
      else
        for (const r of l)
          out(`${r.dest || 'default'}${r.gateway ? ` via ${r.gateway}` : ''} dev ${r.device}${r.mtu ? ` mtu ${r.mtu}` : ''}`);
      return 0;
    }
    if (key === 'route update') {
      const v = await readJson(arg, 'routes');
      const routes = Array.isArray(v) ? v : (v as { Routes?: unknown }).Routes;
      if (!Array.isArray(routes))
        throw new KataError('E_INVALID_ARGUMENT', 'routes must be a JSON array of Route objects or {"Routes": [...]}');
      const r = await cmds.routeUpdate(id, routes as never, config, log);
      out(json ? JSON.stringify(r) : `${r.length} route(s) applied`);
      return 0;
    }
  }
  if (cmd === 'exec') {
    const a = parseArgs(argv.slice(1), { command: 'kata-resources exec', valueFlags: ['config', 'timeout'] });
    if (a.flags.help) return help('exec') ? 0 : 0;
    const id = a.positionals[0];
    if (!id || a.rest.length === 0)
      throw new KataError('E_INVALID_ARGUMENT', 'usage: kata-resources exec ID -- CMD [ARGS...]', { usage: true });
    const timeout = stringFlag(a, 'timeout');
    const { sandboxExec } = await import('./sandbox-commands.js');
    const r = await sandboxExec(id, a.rest, stringFlag(a, 'config'), log, timeout ? Number(timeout) : undefined);
    process.stdout.write(r.stdout);
    process.stderr.write(r.stderr);
    return r.exitCode;
  }
  if (cmd === 'check') {
    const a = parseArgs(argv.slice(1), { command: 'kata-resources check', valueFlags: ['config'] });
    if (a.flags.help) return help('check') ? 0 : 0;
    const { hostCheck, formatCheck } = await import('../host-check.js');
    const { loadConfig } = await import('../config/load-config.js');
    const cfg = loadConfig(stringFlag(a, 'config'), { log, checkFiles: false });
    const { kvmProbe } = await import('../sandbox/qemu-vm.js');
    const items = await hostCheck({
      qemuPath: cfg.hypervisor.path,
      virtiofsdPath: cfg.hypervisor.virtioFsDaemon,
      kvmProbe: () => kvmProbe(cfg.hypervisor.path),
    });
    if (a.flags.json) out(JSON.stringify(items));
    else out(formatCheck(items));
    return items.some((i) => !i.ok && i.severity === 'fail') ? 1 : 0;
  }
  if (cmd === 'demo') {
    const a = parseArgs(argv.slice(1), { command: 'kata-resources demo', valueFlags: ['config'], boolFlags: ['keep'] });
    if (a.flags.help) return help('demo') ? 0 : 0;
    const { demo } = await import('./demo.js');
    const ok = await demo(out, (m) => err(`.. ${m}`), log, {
      ...(stringFlag(a, 'config') ? { config: stringFlag(a, 'config')! } : {}),
      keep: a.flags.keep === true,
    });
    return ok ? 0 : 1;
  }
  if (cmd === 'guest-kit') {
    const a = parseArgs(argv.slice(1), { command: 'kata-resources guest-kit', boolFlags: ['quiet'] });
    if (a.flags.help) return help('guest-kit') ? 0 : 0;
    const { ensureGuestKit } = await import('../guest-kit/index.js');
    const kit = await ensureGuestKit({ ...(a.flags.quiet ? {} : { onProgress: (m: string) => err(`.. ${m}`) }) });
    if (a.flags.json) out(JSON.stringify(kit));
    else
      out(
        `guest kit ${kit.hash}\n  kernel ${kit.kernel} (${kit.kernelVersion}${kit.pvh ? ', PVH' : ''})\n  initrd ${kit.initrd}\n  rootfs ${kit.rootfs}`,
      );
    return 0;
  }
  throw new KataError('E_INVALID_ARGUMENT', `unknown command "${cmd}" (see kata-resources --help)`, { usage: true });
}

export async function main(argv: string[]): Promise<number> {
  try {
    return await dispatch(argv);
  } catch (e) {
    const k = isKataError(e) ? e : new KataError('E_INTERNAL', (e as Error).stack ?? String(e));
    const json = argv.includes('--json');
    if (json) out(JSON.stringify({ error: { code: k.code, message: k.message } }));
    err(`kata-resources: ${k.code}: ${k.message}`);
    return k.details.usage ? 2 : 1;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});

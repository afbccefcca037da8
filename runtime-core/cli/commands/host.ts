import type { KataError } from '../../../host/errors.js';
import { CONFIG_OPTION, JSON_OPTION, flag, intOption, str, type Command } from '../command.js';

const exec: Command = {
  words: ['exec'],
  synopsis: 'ID [-t] [--timeout MS] -- CMD [ARGS...]',
  altSynopsis: ['exec -t ID   (an interactive /bin/sh)'],
  description:
    "Run a command in the guest's root environment (Kata's debug console): stdin is forwarded, output streams as it\n" +
    "comes (byte-exact), and the exit status is the command's. -t gives it a pty with this terminal's window size\n" +
    '(the local terminal in raw mode); without CMD it runs /bin/sh. A command that cannot be started exits 127,\n' +
    'one killed by --timeout 124.',
  options: {
    tty: { type: 'boolean', short: 't', describe: 'allocate a pty in the guest (interactive programs, shells)' },
    timeout: { type: 'string', value: 'MS', describe: 'kill the command after MS milliseconds (default: no limit)' },
    config: CONFIG_OPTION,
  },
  args: [{ name: 'ID' }],
  rest: 'CMD [ARGS...]',
  restOptional: (inv) => flag(inv, 'tty'),
  async run(inv, io) {
    const timeoutMs = intOption(inv, 'timeout', exec, 24 * 3600 * 1000);
    const terminal = flag(inv, 'tty');
    const { sandboxExec } = await import('../sandbox-commands.js');
    const argv = inv.rest.length > 0 ? inv.rest : ['/bin/sh'];
    const env = terminal ? [`TERM=${process.env.TERM || 'xterm'}`] : [];
    try {
      const r = await sandboxExec(inv.args[0]!, { argv, terminal, env, ...(timeoutMs ? { timeoutMs } : {}) }, str(inv, 'config'), io.log);
      if (r.timedOut) {
        io.err(`kata-resources: E_TIMEOUT: exec in sandbox ${inv.args[0]}: ${argv[0]} was killed after ${timeoutMs} ms (--timeout)`);
        return 124;
      }
      return r.status;
    } catch (e) {
      const k = e as KataError;
      if (k.code === 'E_AGENT' && k.details?.agentCode === 'E_EXEC') {
        io.err(`kata-resources: E_AGENT: exec in sandbox ${inv.args[0]}: ${k.message}`);
        return 127;
      }
      throw e;
    }
  },
};

const check: Command = {
  words: ['check'],
  synopsis: '[--config FILE] [--json]',
  description:
    'Host capabilities: tools, QEMU, virtiofsd, /dev/net/tun, /dev/vhost-net, KVM (probed), kernel features\n' +
    '(tried in a throw-away namespace). Each failure comes with a fix. Exit 1 when a required feature is missing.\n' +
    'The configuration (--config, KATA_RESOURCES_CONFIG, KATA_CONF_FILE or the default path) is checked by the\n' +
    'rules and files `sandbox up` uses: a file that passes here does not fail `up` on its configuration.',
  options: { config: CONFIG_OPTION, json: JSON_OPTION },
  async run(inv, io) {
    const { hostCheck, formatCheck } = await import('../../host-check.js');
    const { configCheck } = await import('../config-check.js');
    const { cfg, items: cfgItems } = await configCheck(str(inv, 'config'), io.log);
    const { kvmProbe } = await import('../../hypervisor/qemu/accel.js');
    const items = [
      ...cfgItems,
      ...(await hostCheck({
        qemuPath: cfg.hypervisor.path,
        virtiofsdPath: cfg.hypervisor.virtioFsDaemon,
        kvmProbe: () => kvmProbe(cfg.hypervisor.path),
      })),
    ];
    io.out(flag(inv, 'json') ? JSON.stringify(items) : formatCheck(items));
    return items.some((i) => !i.ok && i.severity === 'fail') ? 1 : 0;
  },
};

const demo: Command = {
  words: ['demo'],
  synopsis: '[--config FILE] [--keep]',
  description:
    'On this machine: a pod namespace with a veth as a CNI plugin would make it, a sandbox on the embedded\n' +
    'guest, what the guest sees, a ping from the guest to the host side, teardown, and a check that nothing is left.',
  options: { config: CONFIG_OPTION, keep: { type: 'boolean', describe: 'leave the sandbox running' } },
  async run(inv, io) {
    const { demo: run } = await import('../demo.js');
    const cfg = str(inv, 'config');
    const ok = await run(io.out, io.progress, io.log, { ...(cfg ? { config: cfg } : {}), keep: flag(inv, 'keep') });
    return ok ? 0 : 1;
  },
};

const guestKit: Command = {
  words: ['guest-kit'],
  synopsis: '[--quiet] [--json]',
  description:
    "Build (once; then cached) the embedded default guest: a kernel built from Debian's linux-source-6.1 with the\n" +
    "guest's drivers built in (uncompressed for a fast PVH boot; KATA_GUEST_KERNEL=debian: the stock kernel), an\n" +
    "initramfs, and the rootfs image (osbuilder's NVDIMM layout) with node and the guest agent. Prints its paths\n" +
    'and whether it and its kernel were built or reused (--json: "outcome", "kernelOutcome": "built" | "reused").',
  options: { quiet: { type: 'boolean', describe: 'no progress lines' }, json: JSON_OPTION },
  async run(inv, io) {
    const { ensureGuestKit } = await import('../../guest-kit/index.js');
    const kit = await ensureGuestKit(flag(inv, 'quiet') ? {} : { onProgress: io.progress });
    if (flag(inv, 'json')) io.out(JSON.stringify(kit));
    else
      io.out(
        `guest kit ${kit.hash} (${kit.outcome})\n  kernel ${kit.kernel} (${kit.kernelVersion}${kit.pvh ? ', PVH' : ''}; ${kit.kernelSource}, ${kit.kernelOutcome})\n  initrd ${kit.initrd}\n  rootfs ${kit.rootfs}`,
      );
    return 0;
  },
};

export const HOST_COMMANDS: readonly Command[] = [exec, check, demo, guestKit];

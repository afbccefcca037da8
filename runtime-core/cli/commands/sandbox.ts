import { resolve } from 'node:path';
import { CONFIG_OPTION, JSON_OPTION, flag, str, usageError, type Command } from '../command.js';
import { sandboxLines } from '../print.js';

const config = { config: CONFIG_OPTION };
const json = { json: JSON_OPTION };

const up: Command = {
  words: ['sandbox', 'up'],
  synopsis: '[--id ID] [--netns NAME|PATH] [--config FILE] [--json]',
  description:
    'Build a sandbox: take (or create) the network namespace, scan it, attach its endpoints, start\n' +
    'virtiofsd, boot the VM, and return once the guest has applied the network and mounted the share.',
  options: {
    id: { type: 'string', value: 'ID', describe: 'sandbox id (default: sb-<random>)' },
    netns: {
      type: 'string',
      value: 'NAME|PATH',
      describe: 'existing namespace to use (name under /run/netns, or a path); default: a new kr-<id>',
    },
    ...config,
    ...json,
  },
  async run(inv, io) {
    const { sandboxUp } = await import('../sandbox-commands.js');
    const id = str(inv, 'id');
    const netns = str(inv, 'netns');
    const cfg = str(inv, 'config');
    const r = await sandboxUp(
      { ...(id ? { id } : {}), ...(netns ? { netns } : {}), ...(cfg ? { config: cfg } : {}), progress: io.progress },
      io.log,
    );
    if (flag(inv, 'json')) io.out(JSON.stringify({ ...r.sandbox, timeline: r.timeline }));
    else for (const l of sandboxLines(r.sandbox)) io.out(l);
    return 0;
  },
};

const status: Command = {
  words: ['sandbox', 'status'],
  synopsis: 'ID [--config FILE] [--json]',
  description: 'The sandbox (state, pids, endpoints, shares) and what the guest agent reports (interfaces, routes, mounts).',
  options: { ...config, ...json },
  args: [{ name: 'ID' }],
  async run(inv, io) {
    const { sandboxStatus } = await import('../sandbox-commands.js');
    const v = await sandboxStatus(inv.args[0]!, str(inv, 'config'), io.log);
    if (flag(inv, 'json')) io.out(JSON.stringify(v));
    else for (const l of sandboxLines(v)) io.out(l);
    return 0;
  },
};

const down: Command = {
  words: ['sandbox', 'down'],
  synopsis: 'ID [--config FILE] [--json]',
  description:
    'Stop the VM and remove everything the sandbox created. Idempotent; works after a crash of the supervisor (from the persisted state).',
  options: { ...config, ...json },
  args: [{ name: 'ID' }],
  async run(inv, io) {
    const { sandboxDown } = await import('../sandbox-commands.js');
    const r = await sandboxDown(inv.args[0]!, str(inv, 'config'), io.log);
    if (flag(inv, 'json')) io.out(JSON.stringify(r));
    else io.out(r.state === 'absent' ? `sandbox ${r.id}: not found; nothing to do` : `sandbox ${r.id}: removed`);
    return 0;
  },
};

const list: Command = {
  words: ['sandbox', 'list'],
  synopsis: '[--config FILE] [--json]',
  description: 'All sandboxes with persisted state.',
  options: { ...config, ...json },
  async run(inv, io) {
    const { sandboxList } = await import('../sandbox-commands.js');
    const l = await sandboxList(str(inv, 'config'), io.log);
    if (flag(inv, 'json')) io.out(JSON.stringify(l));
    else if (l.length === 0) io.out('no sandboxes');
    else
      for (const v of l)
        io.out(
          `${v.id}\t${v.state}\tsupervisor ${v.supervisor}\t${v.netns?.name ?? v.netns?.path ?? '-'}\t${v.endpoints.length} endpoint(s)`,
        );
    return 0;
  },
};

const share: Command = {
  words: ['sandbox', 'share'],
  synopsis: 'ID --source DIR [--name NAME] [--readonly] [--config FILE] [--json]',
  description:
    "Share a host directory into the running sandbox's virtio-fs export (as Kata shares a volume). The guest\n" +
    'sees it under /run/kata-containers/shared/containers/<NAME>. --readonly holds inside the export (the\n' +
    'bind is made read-only before it enters the shared tree).',
  options: {
    source: { type: 'string', value: 'DIR', describe: 'host directory (or file) to share' },
    name: { type: 'string', value: 'NAME', describe: 'name under the share root (default: the source basename)' },
    readonly: { type: 'boolean', describe: 'read-only in the guest' },
    ...config,
    ...json,
  },
  args: [{ name: 'ID' }],
  async run(inv, io) {
    const source = str(inv, 'source');
    if (!source) throw usageError('kata-resources sandbox share needs --source DIR');
    const { sandboxShare } = await import('../sandbox-commands.js');
    const name = str(inv, 'name');
    const r = await sandboxShare(
      inv.args[0]!,
      { source: resolve(source), readonly: flag(inv, 'readonly'), ...(name ? { name } : {}) },
      str(inv, 'config'),
      io.log,
    );
    if (flag(inv, 'json')) io.out(JSON.stringify(r));
    else io.out(`shared ${r.source} as ${r.name}${r.readonly ? ' (read-only)' : ''}: guest ${r.guestPath}`);
    return 0;
  },
};

const unshare: Command = {
  words: ['sandbox', 'unshare'],
  synopsis: 'ID NAME [--config FILE] [--json]',
  description: 'Remove a share made with `sandbox share`.',
  options: { ...config, ...json },
  args: [{ name: 'ID' }, { name: 'NAME' }],
  async run(inv, io) {
    const { sandboxUnshare } = await import('../sandbox-commands.js');
    const [id, name] = inv.args as [string, string];
    await sandboxUnshare(id, name, str(inv, 'config'), io.log);
    io.out(flag(inv, 'json') ? JSON.stringify({ name, state: 'unshared' }) : `unshared ${name}`);
    return 0;
  },
};

export const SANDBOX_COMMANDS: readonly Command[] = [up, status, down, list, share, unshare];

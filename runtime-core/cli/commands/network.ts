import { CONFIG_OPTION, JSON_OPTION, flag, str, usageError, type Command } from '../command.js';
import { readJsonInput } from '../input.js';

const common = { config: CONFIG_OPTION, json: JSON_OPTION };

const ifaceAdd: Command = {
  words: ['iface', 'add'],
  synopsis: 'ID --link NAME [--json]',
  altSynopsis: ['iface add ID FILE|- [--json]'],
  description:
    'Hot-add a network interface to a running sandbox.\n' +
    "  --link NAME  an existing link of the sandbox's network namespace (e.g. one a CNI plugin added\n" +
    '               later): attached with the configured model, hot-plugged, configured in the guest,\n' +
    '               its routes sent\n' +
    '  FILE|-       a Kata agent Interface as JSON ({"name","hwAddr","mtu","IPAddresses":[{"family","address","mask"}]}):\n' +
    '               a new tap tap<idx>_kata is made for it\n' +
    'Prints the interface as the guest agent applied it.',
  options: { link: { type: 'string', value: 'NAME', describe: 'a link of the sandbox netns to attach' }, ...common },
  args: [{ name: 'ID' }, { name: 'FILE', optional: true }],
  async run(inv, io) {
    const { ifaceAdd: add } = await import('../sandbox-commands.js');
    const [id, file] = inv.args as [string, string | undefined];
    const link = str(inv, 'link');
    if (link && file) throw usageError('kata-resources iface add takes --link NAME or FILE, not both');
    if (!link && !file) throw usageError('kata-resources iface add needs --link NAME or an Interface (a file, or - for stdin)');
    // The supervisor checks the Interface's shape (its service validates every request).
    const r = await add(id, link ? { link } : { interface: (await readJsonInput(file!)) as never }, str(inv, 'config'), io.log);
    io.out(
      flag(inv, 'json')
        ? JSON.stringify(r)
        : `added ${r.name} ${r.hwAddr} mtu ${r.mtu} ${r.IPAddresses.map((x) => `${x.address}/${x.mask}`).join(' ')} at ${r.devicePath || '?'}`,
    );
    return 0;
  },
};

const ifaceDel: Command = {
  words: ['iface', 'del'],
  synopsis: 'ID NAME|MAC [--json]',
  description: 'Hot-remove an interface (by guest name or MAC): unplug from the VM, then remove the tap and redirects.',
  options: common,
  args: [{ name: 'ID' }, { name: 'NAME|MAC' }],
  async run(inv, io) {
    const { ifaceDel: del } = await import('../sandbox-commands.js');
    const [id, which] = inv.args as [string, string];
    await del(id, which, str(inv, 'config'), io.log);
    io.out(flag(inv, 'json') ? JSON.stringify({ name: which, state: 'removed' }) : `removed ${which}`);
    return 0;
  },
};

const ifaceList: Command = {
  words: ['iface', 'list'],
  synopsis: 'ID [--json]',
  description: "The guest's interfaces, as the agent reports them.",
  options: common,
  args: [{ name: 'ID' }],
  async run(inv, io) {
    const { ifaceList: ls } = await import('../sandbox-commands.js');
    const l = await ls(inv.args[0]!, str(inv, 'config'), io.log);
    if (flag(inv, 'json')) io.out(JSON.stringify(l));
    else for (const i of l) io.out(`${i.name}\t${i.hwAddr}\tmtu ${i.mtu}\t${i.IPAddresses.map((x) => `${x.address}/${x.mask}`).join(' ')}`);
    return 0;
  },
};

const routeList: Command = {
  words: ['route', 'list'],
  synopsis: 'ID [--json]',
  description: "The guest's routes, as the agent reports them.",
  options: common,
  args: [{ name: 'ID' }],
  async run(inv, io) {
    const { routeList: ls } = await import('../sandbox-commands.js');
    const l = await ls(inv.args[0]!, str(inv, 'config'), io.log);
    if (flag(inv, 'json')) io.out(JSON.stringify(l));
    else
      for (const r of l)
        io.out(`${r.dest || 'default'}${r.gateway ? ` via ${r.gateway}` : ''} dev ${r.device}${r.mtu ? ` mtu ${r.mtu}` : ''}`);
    return 0;
  },
};

const routeUpdate: Command = {
  words: ['route', 'update'],
  synopsis: 'ID FILE|- [--json]',
  description:
    'Send routes (a JSON array of Kata agent Route objects, or {"Routes": [...]}) to the guest agent; routes\n' +
    'without a gateway are applied first. All or none: when one fails, the others are rolled back.',
  options: common,
  args: [{ name: 'ID' }, { name: 'FILE|-' }],
  async run(inv, io) {
    const { routeUpdate: update } = await import('../sandbox-commands.js');
    const [id, file] = inv.args as [string, string];
    const v = await readJsonInput(file);
    const routes = Array.isArray(v) ? v : (v as { Routes?: unknown } | null)?.Routes;
    if (!Array.isArray(routes)) throw usageError('routes must be a JSON array of Route objects or {"Routes": [...]}');
    const r = await update(id, routes as never, str(inv, 'config'), io.log);
    io.out(flag(inv, 'json') ? JSON.stringify(r) : `${r.length} route(s) applied`);
    return 0;
  },
};

export const NETWORK_COMMANDS: readonly Command[] = [ifaceAdd, ifaceDel, ifaceList, routeList, routeUpdate];

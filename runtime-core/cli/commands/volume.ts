import { resolve } from 'node:path';
import { KataError } from '../../../host/errors.js';
import type { VolumeResources } from '../../../plugins/block/volume-plugin.js';
import { CONFIG_OPTION, JSON_OPTION, flag, intOption, str, usageError, type Command } from '../command.js';
import { readJsonInput } from '../input.js';

const common = { config: CONFIG_OPTION, json: JSON_OPTION };

function volumeLine(v: VolumeResources): string {
  return `${v.name}\t${v.source}\t${v.driver}${v.guestDevice ? ` ${v.guestDevice}` : ''}\t${v.mountPoint}${v.readonly ? '\t(read-only)' : ''}`;
}

/** Kata's direct-assigned volume description (`kata-runtime direct-volume add --mount-info`). */
async function mountInfo(src: string): Promise<{ source: string; fstype?: string; options?: string[] }> {
  const v = await readJsonInput(src);
  const m = v as { volume_type?: unknown; device?: unknown; fs_type?: unknown; options?: unknown } | null;
  if (!m || typeof m !== 'object' || typeof m.device !== 'string' || m.device === '') {
    throw new KataError(
      'E_INVALID_ARGUMENT',
      `${src}: a mountInfo needs "device" (Kata's {"volume_type","device","fs_type","metadata","options"})`,
    );
  }
  if (m.fs_type !== undefined && typeof m.fs_type !== 'string')
    throw new KataError('E_INVALID_ARGUMENT', `${src}: mountInfo "fs_type" must be a string`);
  if (m.options !== undefined && (!Array.isArray(m.options) || !m.options.every((o) => typeof o === 'string'))) {
    throw new KataError('E_INVALID_ARGUMENT', `${src}: mountInfo "options" must be an array of strings`);
  }
  return { source: m.device, ...(m.fs_type ? { fstype: m.fs_type } : {}), ...(m.options ? { options: m.options as string[] } : {}) };
}

/** An nbd+unix URI with its socket made absolute (the supervisor does not share the caller's cwd). */
async function absoluteNbdUri(uri: string): Promise<string> {
  const { formatNbdUri, parseNbdUri } = await import('../../../nbd/uri.js');
  const a = parseNbdUri(uri);
  if (a.transport !== 'unix' || a.socket.startsWith('\0')) return uri;
  return formatNbdUri({ ...a, socket: resolve(a.socket) });
}

const add: Command = {
  words: ['volume', 'add'],
  synopsis:
    'ID (--source PATH | --nbd URI | --mount-info FILE|-) [--driver virtio-blk|virtio-scsi] [--readonly] [--fstype ext4] [--mount-point DIR] [--name NAME] [--json]',
  description:
    'Hot-plug a block volume into a running sandbox and have the guest mount it. PATH is a host block device\n' +
    '(loop, device-mapper, NBD, a disk) or a regular image file; one the host has mounted or otherwise uses is\n' +
    'refused (E_DEVICE_BUSY). virtio-blk goes on a free PCIe root port, virtio-scsi on the controller; the agent\n' +
    "waits for the device and mounts it (default /run/kata-containers/sandbox/volumes/NAME). --mount-info takes Kata's\n" +
    'direct-assigned volume JSON ({"volume_type","device","fs_type","metadata","options"}). --nbd takes an export\n' +
    "on a unix socket (nbd+unix:///EXPORT?socket=PATH), probed first and opened by QEMU's own NBD client (reconnect\n" +
    'and open timeouts: block_device_nbd_reconnect_delay/_open_timeout); a read-only export needs --readonly.',
  options: {
    source: { type: 'string', value: 'PATH', describe: 'host block device or image file' },
    nbd: { type: 'string', value: 'URI', describe: 'an NBD export: nbd+unix:///EXPORT?socket=PATH' },
    'mount-info': { type: 'string', value: 'FILE', describe: "Kata's mountInfo.json (or - for stdin) instead of --source" },
    driver: { type: 'string', value: 'DRIVER', describe: 'virtio-blk or virtio-scsi (default: block_device_driver)' },
    readonly: { type: 'boolean', describe: 'read-only for the guest (the device and the mount)' },
    fstype: { type: 'string', value: 'TYPE', describe: 'filesystem to mount (default ext4)' },
    'mount-point': { type: 'string', value: 'DIR', describe: 'where the guest mounts it' },
    name: { type: 'string', value: 'NAME', describe: 'volume name (default: the source basename)' },
    ...common,
  },
  args: [{ name: 'ID' }],
  async run(inv, io) {
    const source = str(inv, 'source');
    const info = str(inv, 'mount-info');
    const nbd = str(inv, 'nbd');
    if ([source, info, nbd].filter((v) => v !== undefined).length !== 1)
      throw usageError('kata-resources volume add needs --source PATH, --nbd URI or --mount-info FILE (one of them)');
    const driver = str(inv, 'driver');
    if (driver !== undefined && driver !== 'virtio-blk' && driver !== 'virtio-scsi')
      throw usageError(`--driver must be virtio-blk or virtio-scsi (got "${driver}")`);
    const base = info ? await mountInfo(info) : nbd ? { nbd: await absoluteNbdUri(nbd) } : { source: resolve(source!) };
    const name = str(inv, 'name');
    const fstype = str(inv, 'fstype');
    const mountPoint = str(inv, 'mount-point');
    const { volumeAdd } = await import('../sandbox-commands.js');
    const v = await volumeAdd(
      inv.args[0]!,
      {
        ...base,
        ...(driver ? { driver } : {}),
        ...(flag(inv, 'readonly') ? { readonly: true } : {}),
        ...(fstype ? { fstype } : {}),
        ...(mountPoint ? { mountPoint } : {}),
        ...(name ? { name } : {}),
      },
      str(inv, 'config'),
      io.log,
    );
    io.out(flag(inv, 'json') ? JSON.stringify(v) : `added ${volumeLine(v)}`);
    return 0;
  },
};

const del: Command = {
  words: ['volume', 'del'],
  synopsis: 'ID NAME [--timeout MS] [--json]',
  description:
    'Remove a block volume: the guest unmounts it, the device is unplugged (the guest has --timeout ms to release\n' +
    'it, default 10000; on a timeout the volume stays recorded and the command can be repeated), the host source\n' +
    'is left as it is.',
  options: { timeout: { type: 'string', value: 'MS', describe: 'how long the guest may take to release the device' }, ...common },
  args: [{ name: 'ID' }, { name: 'NAME' }],
  async run(inv, io) {
    const timeoutMs = intOption(inv, 'timeout', del, 3_600_000);
    const { volumeDel } = await import('../sandbox-commands.js');
    const [id, name] = inv.args as [string, string];
    await volumeDel(id, name, timeoutMs, str(inv, 'config'), io.log);
    io.out(flag(inv, 'json') ? JSON.stringify({ name, state: 'removed' }) : `removed ${name}`);
    return 0;
  },
};

const list: Command = {
  words: ['volume', 'list'],
  synopsis: 'ID [--json]',
  description: 'The block volumes of a running sandbox: name, source, driver, guest device, mount point.',
  options: common,
  args: [{ name: 'ID' }],
  async run(inv, io) {
    const { volumeList } = await import('../sandbox-commands.js');
    const l = await volumeList(inv.args[0]!, str(inv, 'config'), io.log);
    if (flag(inv, 'json')) io.out(JSON.stringify(l));
    else if (l.length === 0) io.out('no volumes');
    else for (const v of l) io.out(volumeLine(v));
    return 0;
  },
};

export const VOLUME_COMMANDS: readonly Command[] = [add, del, list];

/**
 * NBD volumes end to end through the CLI, on one running sandbox: an nbdkit export (file plugin on
 * an ext4 image, unix socket) is hot-plugged with `volume add --nbd`, mounted by the agent and
 * written by the guest; after `volume del` the protocol client (nbd/) reads the export and the file
 * the guest wrote is in it. A read-only export is refused as a read-write volume (E_NBD_READ_ONLY,
 * nothing changed) and holds as a read-only one; TCP, abstract and missing sockets are refused.
 * The server killed with guest writes in flight: the sandbox stays up, QEMU reconnects to the
 * restarted server within block_device_nbd_reconnect_delay and the guest's writes complete intact.
 * Finally the supervisor is killed with an NBD volume attached and `down` leaves nothing.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../../host/exec.js';
import { connectNbd } from '../../../nbd/connect.js';
import { freeze, startNbdkit, tempDir, type NbdServer } from '../../helpers/nbd-servers.js';
import { guestKitOrSkip } from '../../helpers/runtime-core.js';
import { cli, parseJson, pidAlive, residue, tempRuntime, viewPids, waitFor, type CliResult } from '../../helpers/sandbox.js';

const { skip } = await guestKitOrSkip();

interface Volume {
  name: string;
  source: string;
  sourceKind: string;
  driver: string;
  readonly: boolean;
  guestDevice?: string;
  mountPoint: string;
}

const MiB = 1024 * 1024;
const why = (r: CliResult): string => `exit ${r.code}: ${r.stderr.trim().slice(-600)}`;

async function ext4Image(dir: string, name: string): Promise<string> {
  const img = join(dir, name);
  await run('truncate', ['-s', '32M', img]);
  await run('mkfs.ext4', ['-q', '-F', img]);
  return img;
}

/** The whole export through the protocol client, then one file of its ext4 as debugfs reads it. */
async function fileInExport(server: NbdServer, dir: string, path: string): Promise<Buffer> {
  const c = await connectNbd(server.uri());
  const data = Buffer.alloc(c.info.size);
  await c.read(0, data);
  await c.close();
  const copy = join(dir, 'read-back.img');
  const out = join(dir, 'read-back.file');
  writeFileSync(copy, data);
  rmSync(out, { force: true });
  await run('debugfs', ['-R', `dump ${path} ${out}`, copy]);
  return readFileSync(out);
}

t.test('NBD volumes: mounted, written, read back; read-only; refusals; a server restart mid-I/O; crash cleanup', { skip }, async (t) => {
  // Reconnect generously: under TCG on a busy machine QEMU's retry backoff (up to 16 s) is slow.
  const rt = tempRuntime(t, '[hypervisor.qemu]\nblock_device_nbd_reconnect_delay = 300\nblock_device_nbd_open_timeout = 5\n');
  const id = `krt-nbdv-${process.pid}`;
  const c = ['--config', rt.config];
  const up = await cli(['sandbox', 'up', '--id', id, ...c, '--json']);
  t.equal(up.code, 0, `up: ${why(up)}`);
  const pids = viewPids(parseJson(up));
  t.teardown(() => cli(['sandbox', 'down', id, ...c]));
  const guest = (script: string, timeoutMs = 60_000): Promise<CliResult> =>
    cli(['exec', id, ...c, '--timeout', String(timeoutMs), '--', 'sh', '-c', script], { timeoutMs: timeoutMs + 60_000 });
  const disks = async (): Promise<string> => (await guest('ls /sys/block')).stdout.trim();
  const volumes = async (): Promise<string[]> => parseJson<Volume[]>(await cli(['volume', 'list', id, ...c, '--json'])).map((v) => v.name);
  const before = await disks();
  const images = tempDir(t, 'nbdv-img');

  await t.test('an export is hot-plugged, mounted, written by the guest; after del the client reads the file', async (t) => {
    const server = await startNbdkit(t, ['file', await ext4Image(images, 'rw.img')]);
    const a = await cli(['volume', 'add', id, '--nbd', server.uri(), '--name', 'nbd1', ...c, '--json']);
    t.equal(a.code, 0, `add: ${why(a)}`);
    const v = parseJson<Volume>(a);
    t.match(v, { name: 'nbd1', source: server.uri(), sourceKind: 'nbd', driver: 'virtio-blk', readonly: false });
    t.match(v.guestDevice, /^[0-9a-f]{2}\/00$/, 'the guest found it at a PCI path');
    const mp = v.mountPoint;
    t.equal(mp, '/run/kata-containers/sandbox/volumes/nbd1');
    t.match((await guest(`grep " ${mp} " /proc/mounts`)).stdout, /ext4 rw/, 'mounted read-write as ext4');
    const w = await guest(`echo written-through-nbd > ${mp}/f && sync`);
    t.equal(w.code, 0, `the guest writes: ${why(w)}`);
    t.same(await volumes(), ['nbd1']);

    const d = await cli(['volume', 'del', id, 'nbd1', ...c]);
    t.equal(d.code, 0, `del: ${why(d)}`);
    t.equal(await disks(), before, "the guest's /sys/block is as before");
    t.same(await volumes(), [], 'no volume recorded');
    t.equal((await fileInExport(server, images, '/f')).toString().trim(), 'written-through-nbd', 'the client reads what the guest wrote');
  });

  await t.test('a read-only export: refused read-write, mounted read-only with --readonly', async (t) => {
    const server = await startNbdkit(t, ['-r', 'file', await ext4Image(images, 'ro.img')]);
    const rw = await cli(['volume', 'add', id, '--nbd', server.uri(), '--name', 'ro1', ...c]);
    t.equal(rw.code, 1);
    t.match(rw.stderr, /E_NBD_READ_ONLY: volume ro1: NBD export .* is read-only, so it cannot be a read-write volume; add --readonly/);
    t.same(await volumes(), [], 'nothing recorded');
    t.equal(await disks(), before, 'no disk reached the guest');
    const ro = await cli(['volume', 'add', id, '--nbd', server.uri(), '--name', 'ro1', '--readonly', ...c, '--json']);
    t.equal(ro.code, 0, `add --readonly: ${why(ro)}`);
    t.match(parseJson<Volume>(ro), { readonly: true, sourceKind: 'nbd' });
    const w = await guest('echo x > /run/kata-containers/sandbox/volumes/ro1/g');
    t.not(w.code, 0, 'a guest write fails');
    t.match(w.stderr, /Read-only file system/);
    t.equal((await cli(['volume', 'del', id, 'ro1', ...c])).code, 0);
  });

  await t.test('URIs QEMU cannot open from the sandbox, and a socket nobody serves, change nothing', async (t) => {
    const gone = join(images, 'nobody.sock');
    for (const [uri, msg] of [
      ['nbd://127.0.0.1:10809/x', /E_UNSUPPORTED: NBD volume .*sandbox's network namespace.*serve it on a unix socket/],
      ['nbd+unix:///x?socket=%00abstract', /E_UNSUPPORTED: NBD volume .*abstract socket/],
      [`nbd+unix:///x?socket=${gone}`, /E_NBD/],
      ['nbds://host/x', /E_UNSUPPORTED: .*TLS/],
      ['http://host/x', /E_INVALID_ARGUMENT: NBD URI/],
    ] as const) {
      const r = await cli(['volume', 'add', id, '--nbd', uri, ...c]);
      t.equal(r.code, 1, `${uri} refused`);
      t.match(r.stderr, msg, uri);
    }
    const both = await cli(['volume', 'add', id, '--nbd', 'nbd+unix:///?socket=/x', '--source', '/dev/null', ...c]);
    t.equal(both.code, 2, '--nbd with --source is a usage error');
    t.same(await volumes(), []);
    t.equal(await disks(), before);
  });

  await t.test('the server killed with I/O in flight: the sandbox stays up, I/O resumes once it is back', async (t) => {
    const img = await ext4Image(images, 'restart.img');
    const server = await startNbdkit(t, ['file', img]);
    const a = await cli(['volume', 'add', id, '--nbd', server.uri(), '--name', 'nbd2', ...c, '--json']);
    t.equal(a.code, 0, `add: ${why(a)}`);
    const mp = parseJson<Volume>(a).mountPoint;
    const dev = (await guest(`awk '$2 == "${mp}" { print $1 }' /proc/mounts`)).stdout.trim().replace('/dev/', '');
    t.match(dev, /^vd[a-z]+$/, 'the guest device');
    const src = await guest('dd if=/dev/urandom of=/tmp/payload bs=64k count=64 2>/dev/null && sha256sum /tmp/payload');
    const sum = src.stdout.split(' ')[0]!;
    t.match(sum, /^[0-9a-f]{64}$/, 'a 4 MiB payload in guest RAM');

    // Frozen first, so the guest's I/O is surely on the wire when the server dies.
    await freeze(t, server);
    const writing = guest(`dd if=/tmp/payload of=${mp}/payload bs=64k oflag=direct conv=fsync 2>&1`, 600_000);
    // Reads and writes in flight (creating the file reads metadata first).
    const inflight = async (): Promise<number> =>
      (await guest(`cat /sys/block/${dev}/inflight`)).stdout
        .trim()
        .split(/\s+/)
        .reduce((n, x) => n + Number(x), 0);
    await waitFor(async () => (await inflight()) > 0, 120_000, 500);
    t.pass('I/O is in flight on the frozen server');
    server.daemon.signal('SIGKILL');
    await waitFor(() => !pidAlive(server.daemon.pid), 10_000);

    const status = parseJson<{ state: string }>(await cli(['sandbox', 'status', id, ...c, '--json']));
    t.equal(status.state, 'running', 'the sandbox stays up without its server');
    t.equal((await guest('echo alive')).stdout.trim(), 'alive', 'the guest answers');

    const again = await startNbdkit(t, ['file', img], { socket: server.socket });
    const done = await writing;
    t.equal(done.code, 0, `the guest's write finished after the restart: ${why(done)}\n${done.stdout}`);
    t.match((await guest(`grep " ${mp} " /proc/mounts`)).stdout, /ext4 rw/, 'still mounted read-write (no I/O error reached ext4)');
    t.equal((await guest(`sha256sum ${mp}/payload`)).stdout.split(' ')[0], sum, 'the guest reads its data back');

    const d = await cli(['volume', 'del', id, 'nbd2', ...c]);
    t.equal(d.code, 0, `del: ${why(d)}`);
    const back = await fileInExport(again, images, '/payload');
    t.equal(back.length, 4 * MiB);
    t.equal(createHash('sha256').update(back).digest('hex'), sum, 'the export holds exactly what the guest wrote');
  });

  await t.test('a supervisor killed with an NBD volume attached: down leaves nothing', async (t) => {
    const server = await startNbdkit(t, ['memory', '64M']);
    const a = await cli(['volume', 'add', id, '--nbd', server.uri(), '--name', 'nbd3', '--fstype', 'ext4', ...c]);
    // An export without a filesystem: the agent's mount fails and the add is undone...
    t.equal(a.code, 1, 'an export without a filesystem is not mounted');
    t.match(a.stderr, /E_AGENT/);
    t.same(await volumes(), [], '...and undone');
    const fs = await startNbdkit(t, ['file', await ext4Image(images, 'crash.img')]);
    const b = await cli(['volume', 'add', id, '--nbd', fs.uri(), '--name', 'nbd3', ...c]);
    t.equal(b.code, 0, `add: ${why(b)}`);
    const view = parseJson<{ pids: Record<string, number> }>(await cli(['sandbox', 'status', id, ...c, '--json']));
    const sup = view.pids.supervisor;
    t.ok(sup, 'the supervisor pid');
    process.kill(sup!, 'SIGKILL');
    await waitFor(() => !pidAlive(sup!), 10_000);
    const down = await cli(['sandbox', 'down', id, ...c]);
    t.equal(down.code, 0, `down: ${why(down)}`);
    t.same(await residue(rt, { id, pids }), [], 'nothing of the sandbox is left');
    t.ok(fs.daemon.running, 'the server is untouched');
  });
});

/**
 * An NBD volume whose server dies with guest I/O in flight and does not come back (issue 15): once
 * block_device_nbd_reconnect_delay has run out, QEMU fails the held requests and the guest's write
 * ends with an I/O error (no hang); the sandbox stays up and the guest answers; `volume del` still
 * unmounts and unplugs the device, and `down` leaves nothing. The server's restart within the delay
 * is the other half, in nbd-volume-is-mounted-written-...-reads-back-after-del.test.ts.
 */
import t from 'tap';
import { join } from 'node:path';
import { run } from '../../../host/exec.js';
import { freeze, startNbdkit, tempDir } from '../../helpers/nbd-servers.js';
import { guestKitOrSkip } from '../../helpers/runtime-core.js';
import { cli, parseJson, pidAlive, residue, tempRuntime, viewPids, waitFor, type CliResult } from '../../helpers/sandbox.js';

const { skip } = await guestKitOrSkip();

const why = (r: CliResult): string => `exit ${r.code}: ${r.stderr.trim().slice(-600)}`;

t.test('the server gone for good: guest I/O fails after the reconnect delay, the volume still goes', { skip }, async (t) => {
  const rt = tempRuntime(t, '[hypervisor.qemu]\nblock_device_nbd_reconnect_delay = 5\nblock_device_nbd_open_timeout = 5\n');
  const id = `krt-nbdx-${process.pid}`;
  const c = ['--config', rt.config];
  const up = await cli(['sandbox', 'up', '--id', id, ...c, '--json']);
  t.equal(up.code, 0, `up: ${why(up)}`);
  const pids = viewPids(parseJson(up));
  t.teardown(() => cli(['sandbox', 'down', id, ...c]));
  const guest = (script: string, timeoutMs = 60_000): Promise<CliResult> =>
    cli(['exec', id, ...c, '--timeout', String(timeoutMs), '--', 'sh', '-c', script], { timeoutMs: timeoutMs + 60_000 });
  const disks = async (): Promise<string> => (await guest('ls /sys/block')).stdout.trim();
  const before = await disks();

  const img = join(tempDir(t, 'nbdx-img'), 'dead.img');
  await run('truncate', ['-s', '32M', img]);
  await run('mkfs.ext4', ['-q', '-F', img]);
  const server = await startNbdkit(t, ['file', img]);
  const a = await cli(['volume', 'add', id, '--nbd', server.uri(), '--name', 'dead', ...c, '--json']);
  t.equal(a.code, 0, `add: ${why(a)}`);
  const mp = parseJson<{ mountPoint: string }>(a).mountPoint;
  const dev = (await guest(`awk '$2 == "${mp}" { print $1 }' /proc/mounts`)).stdout.trim().replace('/dev/', '');
  t.match(dev, /^vd[a-z]+$/, 'mounted from a virtio-blk disk');

  await freeze(t, server);
  const writing = guest(`dd if=/dev/zero of=${mp}/lost bs=64k count=64 oflag=direct conv=fsync 2>&1`, 600_000);
  const inflight = async (): Promise<number> =>
    (await guest(`cat /sys/block/${dev}/inflight`)).stdout
      .trim()
      .split(/\s+/)
      .reduce((n, x) => n + Number(x), 0);
  await waitFor(async () => (await inflight()) > 0, 120_000, 500);
  t.pass('I/O is in flight on the frozen server');
  server.daemon.signal('SIGKILL');
  await waitFor(() => !pidAlive(server.daemon.pid), 10_000);

  const done = await writing;
  t.not(done.code, 0, "the guest's write fails once the reconnect delay has run out (it does not hang)");
  t.match(done.stdout, /Input\/output error|I\/O error|Read-only file system/, `an I/O error reaches the guest: ${done.stdout}`);
  t.match((await guest(`dmesg | grep -c "I/O error, dev ${dev}" || true`)).stdout.trim(), /^[1-9]\d*$/, 'the guest kernel saw I/O errors');

  const status = parseJson<{ state: string }>(await cli(['sandbox', 'status', id, ...c, '--json']));
  t.equal(status.state, 'running', 'the sandbox stays up');
  t.equal((await guest('echo alive')).stdout.trim(), 'alive', 'the guest answers');

  const d = await cli(['volume', 'del', id, 'dead', ...c]);
  t.equal(d.code, 0, `del of a volume whose server is gone: ${why(d)}`);
  t.equal(await disks(), before, "the guest's /sys/block is as before");
  t.same(parseJson<unknown[]>(await cli(['volume', 'list', id, ...c, '--json'])), [], 'no volume recorded');

  const down = await cli(['sandbox', 'down', id, ...c]);
  t.equal(down.code, 0, `down: ${why(down)}`);
  t.same(await residue(rt, { id, pids }), [], 'nothing of the sandbox is left');
});

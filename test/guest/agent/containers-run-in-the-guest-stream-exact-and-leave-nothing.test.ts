/**
 * Containers in the real guest: the guest kit under QEMU (TCG) with a virtio-fs share holding
 * busybox rootfs trees, the agent's container calls driven through the host client and its stream
 * pumps. One VM for all cases (a boot costs tens of seconds under TCG).
 */
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Writable } from 'node:stream';
import type { AgentClient } from '../../../runtime-core/agent/client.js';
import { ProcessIo } from '../../../runtime-core/agent/process-io.js';
import { GUEST_SHARED, bootGuestVm } from '../../helpers/guest-vm.js';
import { containerSpec, makeBusyboxRootfs, ociProcess } from '../../helpers/oci-bundle.js';
import { guestKitOrSkip } from '../../helpers/runtime-core.js';

class Collect extends Writable {
  chunks: Buffer[] = [];
  override _write(c: Buffer, _e: BufferEncoding, cb: () => void): void {
    this.chunks.push(c);
    cb();
  }
  get data(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

interface Ran {
  status: number;
  stdout: Buffer;
  stderr: Buffer;
}

/** Pump stdio (stdin from `input`, closed at its end) and wait; the status only counts once output is in. */
async function attach(c: AgentClient, cid: string, eid: string, input?: Buffer, tty = false): Promise<Ran> {
  const out = new Collect();
  const err = new Collect();
  const stdin = input === undefined ? undefined : new PassThrough();
  const io = new ProcessIo(c, cid, eid, { stdout: out, stderr: tty ? undefined : err, stdin });
  stdin?.end(input);
  const status = await c.waitProcess(cid, eid, { timeoutMs: 120_000 });
  await io.output;
  await io.input;
  return { status, stdout: out.data, stderr: err.data };
}

/** The agent's error code of a failed call ('' if it did not fail). */
const agentCode = (p: Promise<unknown>): Promise<string> =>
  p.then(
    () => '',
    (e: { details?: { agentCode?: string } }) => e.details?.agentCode ?? String(e),
  );

const rootExec = async (c: AgentClient, eid: string, args: string[], input?: Buffer): Promise<Ran> => {
  await c.execProcess('', eid, ociProcess(args, { env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'] }));
  return attach(c, '', eid, input);
};

t.test('containers in the guest', async (t) => {
  const { kit, skip } = await guestKitOrSkip();
  if (!kit) {
    t.fail(String(skip));
    return;
  }
  const vm = await bootGuestVm(t, kit);
  t.comment(`QEMU spawn -> agent ready: ${vm.readyMs} ms`);
  const c = vm.client;
  const chunk = randomBytes(1024 * 1024);
  writeFileSync(join(vm.shared, 'r1m'), chunk);
  const rootfs = (cid: string): void => {
    const r = join(vm.shared, cid, 'rootfs');
    makeBusyboxRootfs(r);
    writeFileSync(join(r, 'data', 'r1m'), chunk);
  };
  const create = async (cid: string, args: string[], o: Parameters<typeof containerSpec>[2] = {}): Promise<void> => {
    rootfs(cid);
    await c.createContainer({ container_id: cid, exec_id: cid, storages: [], OCI: containerSpec(cid, args, o) });
  };
  let seq = 0;
  const run = async (args: string[], input?: Buffer): Promise<Ran> => {
    const cid = `run${++seq}`;
    await create(cid, args);
    const io = attach(c, cid, cid, input);
    await c.startContainer(cid);
    const r = await io;
    await c.removeContainer(cid);
    return r;
  };

  await t.test('echo hi prints hi and exits 0; exit 7 is 7', async (t) => {
    const r = await run(['echo', 'hi']);
    t.equal(r.stdout.toString(), 'hi\n');
    t.equal(r.status, 0);
    t.equal((await run(['sh', '-c', 'echo to-stderr >&2; exit 7'])).status, 7, 'exit status 7');
  });

  await t.test('stdin is forwarded and CloseStdin ends it after the data', async (t) => {
    const input = Buffer.concat([Buffer.from('hello\n'), randomBytes(300_000), Buffer.from('\nend')]);
    const r = await run(['cat'], input);
    t.equal(r.status, 0);
    t.ok(r.stdout.equals(input), `cat echoed all ${input.length} bytes exactly`);
  });

  await t.test('64 MiB of binary stdout arrive intact', async (t) => {
    const n = 64;
    const want = createHash('sha256');
    for (let i = 0; i < n; i++) want.update(chunk);
    const started = Date.now();
    // One process writing it all (a loop would exec busybox from the virtio-fs rootfs 64 times).
    const r = await run(['sh', '-c', `yes /data/r1m | head -n ${n} | xargs cat`]);
    const s = (Date.now() - started) / 1000;
    t.equal(r.status, 0);
    t.equal(r.stdout.length, n * 1024 * 1024, 'all bytes');
    t.equal(createHash('sha256').update(r.stdout).digest('hex'), want.digest('hex'), 'sha256 matches');
    t.comment(`container stdout through the agent: ${(n / s).toFixed(1)} MiB/s (${s.toFixed(1)} s for ${n} MiB, incl. create/remove)`);
  });

  await t.test('a terminal process sees its window size and TtyWinResize', async (t) => {
    const cid = 'tty1';
    await create(cid, ['sh', '-c', 'stty size; read x; stty size; tty'], { terminal: true, consoleSize: { height: 24, width: 80 } });
    const out = new Collect();
    const stdin = new PassThrough();
    const io = new ProcessIo(c, cid, cid, { stdout: out, stdin });
    await c.startContainer(cid);
    for (let i = 0; i < 600 && !out.data.toString().includes('24 80'); i++) await new Promise((r) => setTimeout(r, 100));
    t.match(out.data.toString(), /24 80/, 'initial consoleSize');
    await c.ttyWinResize(cid, cid, 40, 132);
    await new Promise((r) => setTimeout(r, 300));
    stdin.end('\n');
    t.equal(await c.waitProcess(cid, cid, { timeoutMs: 60_000 }), 0);
    await io.output;
    t.match(out.data.toString(), /40 132/, 'the resize reached the pty');
    t.match(out.data.toString(), /\/dev\/pts\/\d+/, 'stdin is a pty');
    await c.removeContainer(cid);
  });

  await t.test('exec in a running container; SIGTERM to an init without a handler kills it (Kata)', async (t) => {
    const cid = 'ex1';
    await create(cid, ['sleep', '1000']);
    const init = attach(c, cid, cid);
    await c.startContainer(cid);
    await c.execProcess(cid, 'e1', ociProcess(['sh', '-c', 'echo pid=$$; hostname; cat /proc/1/cmdline; echo']));
    const e = await attach(c, cid, 'e1');
    t.equal(e.status, 0);
    t.match(e.stdout.toString().replaceAll('\0', ' '), /^pid=\d+\nex1\nsleep 1000/, 'runs in the container: its hostname, its pid 1');
    t.equal(await agentCode(c.execProcess(cid, 'e1', ociProcess(['true']))), 'E_ALREADY_EXISTS', 'duplicate exec_id');
    t.equal(await agentCode(c.execProcess(cid, cid, ociProcess(['true']))), 'E_ALREADY_EXISTS', "the init's exec_id");
    await c.signalProcess(cid, cid, 15);
    t.equal((await init).status, 137, 'SIGTERM became SIGKILL: 137');
    t.equal(await c.waitProcess(cid, ''), 137, 'a later Wait answers the cached status');
    const list = await c.listContainers();
    t.match(
      list.find((x) => x.container_id === cid),
      { status: 'stopped', init: { exit_status: 137 } },
    );
    await c.removeContainer(cid);
  });

  await t.test('SignalProcess SIGKILL with exec_id "" kills every process: 137', async (t) => {
    const cid = 'kill1';
    await create(cid, ['sh', '-c', 'trap "" TERM; sleep 1000 & wait']);
    const init = attach(c, cid, cid);
    await c.startContainer(cid);
    await new Promise((r) => setTimeout(r, 500));
    const waits = Promise.all([c.waitProcess(cid, cid), c.waitProcess(cid, ''), c.waitProcess(cid, cid)]);
    await c.signalProcess(cid, '', 9);
    t.equal((await init).status, 137);
    t.same(await waits, [137, 137, 137], 'every concurrent waiter is answered');
    await c.removeContainer(cid);
  });

  await t.test('two containers in one VM have their own namespaces', async (t) => {
    const script = ['sh', '-c', 'hostname; echo $$; for n in pid uts mnt; do readlink /proc/self/ns/$n; done; sleep 1'];
    await create('ns-a', script, { hostname: 'alpha' });
    await create('ns-b', script, { hostname: 'beta' });
    const a = attach(c, 'ns-a', 'ns-a');
    const b = attach(c, 'ns-b', 'ns-b');
    await Promise.all([c.startContainer('ns-a'), c.startContainer('ns-b')]);
    const [ra, rb] = await Promise.all([a, b]);
    const la = ra.stdout.toString().trim().split('\n');
    const lb = rb.stdout.toString().trim().split('\n');
    t.same([la[0], la[1]], ['alpha', '1'], 'a: its hostname, pid 1');
    t.same([lb[0], lb[1]], ['beta', '1'], 'b: its hostname, pid 1');
    for (let i = 2; i < 5; i++) t.not(la[i], lb[i], `different ${la[i]?.split(':')[0]} namespace`);
    const guest = await rootExec(c, 'ns-guest', ['readlink', '/proc/self/ns/pid']);
    t.not(guest.stdout.toString().split('\n')[0], la[2], 'not the guest pid namespace');
    await c.removeContainer('ns-a');
    await c.removeContainer('ns-b');
  });

  await t.test('a background grandchild holding stdout does not hold up the exit', async (t) => {
    const r = await rootExec(c, 'bg1', ['sh', '-c', 'sleep 120 & echo started; exit 3']);
    t.equal(r.status, 3, 'Wait answered (its own timeout is 120 s, the grandchild lives 120 s)');
    t.equal(r.stdout.toString(), 'started\n', 'the output before the exit is complete');
    const cid = 'bg2';
    await create(cid, ['sleep', '1000']);
    await c.startContainer(cid);
    await c.execProcess(cid, 'e', ociProcess(['sh', '-c', 'sleep 120 & echo in-container; exit 4']));
    const e = await attach(c, cid, 'e');
    t.same([e.status, e.stdout.toString()], [4, 'in-container\n'], 'same for an exec in a container');
    await c.removeContainer(cid);
  });

  await t.test('root-environment exec streams binary byte-exact and forwards stdin', async (t) => {
    const bin = await rootExec(c, 'bin1', ['sh', '-c', `printf '\\377\\376\\200'; cat ${GUEST_SHARED}/r1m; printf '\\000'`]);
    t.equal(bin.status, 0);
    t.ok(bin.stdout.equals(Buffer.concat([Buffer.from([0xff, 0xfe, 0x80]), chunk, Buffer.from([0])])), 'bytes exact (no UTF-8 decoding)');
    const input = randomBytes(200_000);
    const cat = await rootExec(c, 'cat1', ['sh', '-c', 'cat; echo done >&2'], input);
    t.ok(cat.stdout.equals(input), 'stdin forwarded exactly');
    t.equal(cat.stderr.toString(), 'done\n', 'stderr is its own stream');
    t.equal(await agentCode(c.execProcess('', 'nope', ociProcess(['/nonexistent/prog']))), 'E_EXEC');
  });

  await t.test('RemoveContainer leaves no mount, no runc state, no bundle, no cgroup', async (t) => {
    const cid = 'left1';
    await create(cid, ['sleep', '1000']);
    await c.startContainer(cid);
    await c.removeContainer(cid, 10);
    t.same(await c.listContainers(), [], 'no container left');
    const mounts = (await c.listMounts()).mounts.filter(
      (m) => m.mount_point.startsWith('/run/kata-containers/') && !m.mount_point.startsWith(GUEST_SHARED),
    );
    t.same(mounts, [], 'no rootfs bind left');
    // The lister's own FIFO directory (its stdout: /run/kata-agent/ioN/1, unlinked) is there until
    // the agent removes it just after the process started: not counted.
    const ls = await rootExec(c, 'ls1', [
      'sh',
      '-c',
      'o=$(readlink /proc/$$/fd/1); o=${o%/*}; o=${o##*/}; ' +
        'ls -A /run/runc; echo --; ls -A /run/kata-containers; echo --; ls -A /sys/fs/cgroup | grep -E "^(default|kata)$"; echo --; ' +
        'ls -A /run/kata-agent | grep -vx "$o"',
    ]);
    t.equal(ls.stdout.toString(), '--\nshared\n--\n--\n', 'runc state, bundles, cgroups, FIFOs and sockets are gone');
    t.equal(await agentCode(c.removeContainer(cid)), 'E_NOT_FOUND', 'a second remove: not found');
  });

  await t.test('bad input is refused and leaves nothing', async (t) => {
    mkdirSync(join(vm.shared, 'bad1'), { recursive: true });
    t.equal(await agentCode(c.createContainer({ container_id: 'bad1', OCI: containerSpec('bad1', ['true']) })), 'E_INVALID_ARGUMENT');
    t.equal(await agentCode(c.createContainer({ container_id: '../x', OCI: containerSpec('x', ['true']) })), 'E_INVALID_ARGUMENT');
    rootfs('bad2');
    t.equal(await agentCode(c.createContainer({ container_id: 'bad2', OCI: containerSpec('bad2', ['/no/such/program']) })), 'E_EXEC');
    const left = await rootExec(c, 'ls2', ['sh', '-c', 'ls -A /run/runc /run/kata-containers']);
    t.equal(left.stdout.toString(), '/run/kata-containers:\nshared\n\n/run/runc:\n', 'nothing left by the failed creates');
  });
});

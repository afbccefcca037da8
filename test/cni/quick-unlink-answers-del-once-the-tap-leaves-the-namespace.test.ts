import { type ChildProcess, spawn } from 'node:child_process';
import t from 'tap';
import { quickUnlink } from '../../cni/quick-unlink.js';
import { run } from '../../host/exec.js';
import type { BatchOutcome, CoprocessNetlink } from '../../host/netlink.js';
import type { NetnsRef } from '../../host/netns.js';
import { links, tempNetns } from '../helpers/netns.js';

/**
 * DEL's `link del` is answered once the device has left the namespace, not when the kernel has
 * finished freeing it (cni/quick-unlink.ts). The kernel's acknowledgement is held back here for
 * good (an inner netlink whose answer never comes unless the test gives one), with a real process
 * inside a real namespace as "the helper" whose /proc/<pid>/net/dev the wrapper reads.
 */
interface Held {
  netlink: CoprocessNetlink;
  /** Give the kernel's answer to the pending batch. */
  answer(o: BatchOutcome): void;
  calls: string[][];
}

function heldNetlink(pid: number | undefined, onBatch: (lines: readonly string[]) => Promise<void>): Held {
  let answer: (o: BatchOutcome) => void = () => {};
  const calls: string[][] = [];
  const inner = {
    batch: async (_tool: string, _ns: NetnsRef | undefined, lines: readonly string[]) => {
      calls.push([...lines]);
      await onBatch(lines);
      return new Promise<BatchOutcome>((resolve) => {
        answer = resolve;
      });
    },
    helperPid: () => pid,
    json: () => Promise.reject(new Error('not used')),
    release: () => {},
    close: () => {},
  };
  return { netlink: inner as unknown as CoprocessNetlink, answer: (o) => answer(o), calls };
}

/** A process that sits in ns until killed: what the wrapper looks through. */
function sitIn(t: { teardown(fn: () => void): void }, ns: NetnsRef): ChildProcess {
  const c = spawn('nsenter', [`--net=${ns.path}`, 'sleep', '300'], { stdio: 'ignore' });
  t.teardown(() => {
    c.kill('SIGKILL');
  });
  return c;
}

async function inNamespace(pid: number, ns: NetnsRef): Promise<void> {
  const want = (await run('stat', ['-L', '-c', '%i', ns.path])).stdout.trim();
  for (let i = 0; i < 200; i++) {
    const r = await run('readlink', [`/proc/${pid}/ns/net`], { reject: false });
    if (r.stdout.trim() === `net:[${want}]`) return;
    await new Promise((r2) => setTimeout(r2, 10));
  }
  throw new Error(`pid ${pid} never entered ${ns.path}`);
}

const within = <T>(p: Promise<T>, ms: number): Promise<T | 'pending'> =>
  Promise.race([p, new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms))]);

t.test('a tap deleted in the namespace counts as done before the kernel answers', async (t) => {
  const ns = await tempNetns(t, 'qu');
  await run('ip', ['-n', ns.name!, 'tuntap', 'add', 'dev', 'qu0', 'mode', 'tap']);
  const sitter = sitIn(t, ns);
  await inNamespace(sitter.pid!, ns);
  const held = heldNetlink(sitter.pid, async () => {
    await run('ip', ['-n', ns.name!, 'link', 'del', 'qu0']);
  });
  const out = await within(quickUnlink(held.netlink).batch('ip', ns, ['link del dev qu0']), 5000);
  t.same(out, [null], 'answered as done while the kernel answer is still held back');
  t.notOk(
    (await links(ns)).some((l) => l.ifname === 'qu0'),
    'the device is gone',
  );
});

t.test('a tap that stays listed waits for the kernel, whose failure is the answer', async (t) => {
  const ns = await tempNetns(t, 'qu');
  await run('ip', ['-n', ns.name!, 'tuntap', 'add', 'dev', 'qu1', 'mode', 'tap']);
  const sitter = sitIn(t, ns);
  await inNamespace(sitter.pid!, ns);
  const held = heldNetlink(sitter.pid, async () => {});
  const pending = quickUnlink(held.netlink).batch('ip', ns, ['link del dev qu1']);
  t.equal(await within(pending, 300), 'pending', 'no answer while the device is listed');
  held.answer(['RTNETLINK answers: Operation not permitted']);
  t.same(await pending, ['RTNETLINK answers: Operation not permitted'], "the kernel's answer");
});

t.test('a device already absent is done at once (DEL: gone is gone)', async (t) => {
  const ns = await tempNetns(t, 'qu');
  const sitter = sitIn(t, ns);
  await inNamespace(sitter.pid!, ns);
  const held = heldNetlink(sitter.pid, async () => {});
  t.same(await within(quickUnlink(held.netlink).batch('ip', ns, ['link del dev nothere0']), 5000), [null]);
});

t.test("without a helper, or for other lines, only the kernel's answer counts", async (t) => {
  const ns = await tempNetns(t, 'qu');
  const noHelper = heldNetlink(undefined, async () => {});
  const p1 = quickUnlink(noHelper.netlink).batch('ip', ns, ['link del dev nothere0']);
  t.equal(await within(p1, 300), 'pending', 'no helper pid: nothing to look through');
  noHelper.answer(['Cannot find device "nothere0"']);
  t.same(await p1, ['Cannot find device "nothere0"']);

  const sitter = sitIn(t, ns);
  await inNamespace(sitter.pid!, ns);
  const other = heldNetlink(sitter.pid, async () => {});
  const p2 = quickUnlink(other.netlink).batch('ip', ns, ['link set dev nothere0 up']);
  t.equal(await within(p2, 300), 'pending', 'not a link del line');
  other.answer([null]);
  t.same(await p2, [null]);
  t.same(other.calls, [['link set dev nothere0 up']], 'the lines went to the inner netlink unchanged');
});

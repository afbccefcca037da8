import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { takeEarlyHelper } from '../../cni/early-helper-holder.js';
import { startEarlyHelpers } from '../../cni/early-helpers.js';
import { SideChild, spawnPair } from '../../cni/helper-pair.js';
import { RawChild } from '../../cni/raw-spawn.js';
import { holdEventLoop } from '../../host/child-ref.js';
import { CoprocessNetlink, helperArgv } from '../../host/netlink.js';
import { tempNetns } from '../helpers/netns.js';

/**
 * cni/helper-pair.ts starts kata-cni's ip and tc helpers from one spawn of /bin/sh; tc is then a
 * child of ip, not of the plugin (SideChild). What CoprocessNetlink and kata-cni rely on: both
 * answer through an adopting CoprocessNetlink, tc only after its go line, with its pid from the
 * first line; either side dying leaves the other working and fails only its own requests; a kill
 * of the side works before and after its pid is known and never reaches a process that is not the
 * side helper; ip missing from PATH gives E_EXEC_NOT_FOUND as a spawn would; and without a shell
 * the early helpers are spawned one each, as before the pair.
 */
type Links = { ifname: string }[];

function exited(c: {
  on(e: 'exit', f: (code: number | null, sig: string | null) => void): unknown;
}): Promise<[number | null, string | null]> {
  return new Promise((resolve) => c.on('exit', (code, sig) => resolve([code, sig])));
}

async function until(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const cmdline = (pid: number): string => readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').join(' ').trim();
const ppid = (pid: number): number => Number(readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1]!.split(' ')[1]);

function adoptingNetlink(pair: { main: RawChild; side: SideChild }): CoprocessNetlink {
  const adopt = (tool: string): ChildProcess => {
    if (tool === 'ip') return pair.main as unknown as ChildProcess;
    pair.side.go(); // as kata-cni's startTcHelper does before tc's first request
    return pair.side as unknown as ChildProcess;
  };
  return new CoprocessNetlink(500, { ipDetails: true, adopt });
}

t.test('one spawn: ip answers at once, tc after its go line, tc a child of ip with the pid of its first line', async (t) => {
  const ns = await tempNetns(t, 'pair');
  const pair = spawnPair(helperArgv('ip', ns, true), helperArgv('tc', ns, true))!;
  t.ok(pair, 'started');
  const nl = adoptingNetlink(pair);
  t.teardown(() => nl.close());
  t.same(pair.main.spawnargs, ['ip', ...helperArgv('ip', ns, true)[1]], 'the ip side shows the ip command line');
  t.same(pair.side.spawnargs, ['tc', ...helperArgv('tc', ns, true)[1]], 'the tc side shows the tc command line');
  await nl.batch('ip', ns, ['link set lo up']);
  t.equal(cmdline(pair.main.pid!), ['ip', ...helperArgv('ip', ns, true)[1]].join(' '), "the shell exec'd ip");
  t.same(await nl.batch('tc', ns, ['qdisc add dev lo ingress', 'qdisc add dev nonexistent0 ingress']), [
    null,
    'Cannot find device "nonexistent0"',
  ]);
  const q = await nl.json<{ kind: string }[]>('tc', ns, ['qdisc', 'show', 'dev', 'lo', 'ingress']);
  t.equal(q[0]?.kind, 'ingress', 'tc read served');
  const pid = pair.side.pid!;
  t.type(pid, 'number');
  t.equal(nl.helperPid('tc', ns), pid);
  t.equal(cmdline(pid), ['tc', ...helperArgv('tc', ns, true)[1]].join(' '), 'the pid is the tc helper');
  t.equal(ppid(pid), pair.main.pid, 'tc is a child of ip: one spawn for both');
  await nl.release(ns);
  t.not(pair.side.exitCode, null, 'released: tc got EOF, its stdout closed');
  t.not(pair.main.exitCode, null, 'released: ip got EOF and exited');
});

t.test('the tc side dying (killed from outside): a new tc serves the next request; ip goes on', async (t) => {
  const ns = await tempNetns(t, 'pair');
  const pair = spawnPair(helperArgv('ip', ns, true), helperArgv('tc', ns, true))!;
  const nl = adoptingNetlink(pair);
  t.teardown(() => nl.close());
  await nl.json('tc', ns, ['qdisc', 'show']);
  const gone = exited(pair.side);
  process.kill(pair.side.pid!, 'SIGKILL');
  t.same(await gone, [0, null], "exit seen on EOF (status unknown: it is ip's child)");
  t.same(await nl.batch('tc', ns, ['qdisc add dev lo ingress']), [null], 'served');
  t.not(nl.helperPid('tc', ns), pair.side.pid, 'by a new tc helper');
  t.ok(Array.isArray(await nl.json<Links>('ip', ns, ['addr', 'show', 'dev', 'lo'])), 'ip still answers');
  t.equal(nl.helperPid('ip', ns), pair.main.pid, 'the same ip helper');
});

t.test('the tc side exiting before its first request (bad namespace) is an exit, not a hang', async (t) => {
  const pair = spawnPair(['cat', []], ['tc', ['-n', 'krt-no-such-namespace-x', '-batch', '-']])!;
  const err: string[] = [];
  pair.side.stderr.setEncoding('utf8').on('data', (d: string) => err.push(d));
  const errEnd = new Promise((r) => pair.side.stderr.on('end', r));
  const gone = exited(pair.side);
  pair.side.go();
  await gone;
  await errEnd;
  t.match(err.join(''), /namespace|No such file/i, "tc's own message comes through");
  t.equal(pair.side.kill('SIGKILL'), false, 'killing an exited side does nothing');
  pair.main.stdin.end();
  await exited(pair.main);
});

t.test('the ip side dying leaves the tc side working; a new ip serves the next request', async (t) => {
  const ns = await tempNetns(t, 'pair');
  const pair = spawnPair(helperArgv('ip', ns, true), helperArgv('tc', ns, true))!;
  const nl = adoptingNetlink(pair);
  t.teardown(() => nl.close());
  await nl.json('ip', ns, ['addr', 'show', 'dev', 'lo']);
  const gone = exited(pair.main);
  pair.main.kill('SIGKILL');
  t.same(await gone, [null, 'SIGKILL']);
  t.same(await nl.batch('tc', ns, ['qdisc add dev lo ingress']), [null], 'tc still answers');
  t.equal(nl.helperPid('tc', ns), pair.side.pid, 'the same tc helper');
  t.ok(Array.isArray(await nl.json<Links>('ip', ns, ['addr', 'show', 'dev', 'lo'])), 'ip served');
  t.not(nl.helperPid('ip', ns), pair.main.pid, 'by a new ip helper');
});

t.test('kill of the side: before its pid is known, after, and never of a process that is not the side', async (t) => {
  // Before the pid line is read: the signal waits for it; EOF on stdin ends it meanwhile.
  const a = spawnPair(['cat', []], ['sleep', ['30']])!;
  const goneA = exited(a.side);
  t.ok(a.side.kill('SIGKILL'));
  await goneA;
  a.main.stdin.end();

  // After: the subshell waiting for go, then the exec'd helper, are killed by pid.
  const b = spawnPair(['cat', []], ['sleep', ['30']])!;
  await until('the side pid', () => b.side.pid !== undefined);
  b.side.go();
  await until('sleep exec', () => cmdline(b.side.pid!) === 'sleep 30');
  const goneB = exited(b.side);
  t.ok(b.side.kill('SIGKILL'));
  t.same(await goneB, [null, 'SIGKILL']);
  b.main.stdin.end();

  // A pid whose process is something else (as a recycled pid would be) is not signalled.
  const other = spawn('sleep', ['31'], { stdio: 'ignore' });
  t.teardown(() => other.kill('SIGKILL'));
  const c = spawnPair(['cat', []], ['sleep', ['30']])!;
  await until('the side pid', () => c.side.pid !== undefined);
  const own = c.side.pid!;
  c.side.pid = other.pid;
  t.equal(c.side.kill('SIGKILL'), false, 'refused: the cmdline is not the side helper');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(other.exitCode ?? other.signalCode, null, 'the other process still runs');
  c.side.pid = own;
  const goneC = exited(c.side);
  t.ok(c.side.kill('SIGKILL'));
  await goneC;
  c.main.stdin.end();
});

t.test('ip missing from PATH: E_EXEC_NOT_FOUND, as a spawn of a missing command reports', async (t) => {
  const ns = await tempNetns(t, 'pair');
  const empty = mkdtempSync(join(tmpdir(), 'krt-pair-path-'));
  t.teardown(() => rmSync(empty, { recursive: true, force: true }));
  const path = process.env.PATH;
  process.env.PATH = empty;
  let pair: ReturnType<typeof spawnPair>;
  try {
    pair = spawnPair(helperArgv('ip', ns, true), helperArgv('tc', ns, true));
  } finally {
    process.env.PATH = path;
  }
  t.ok(pair, 'the shell started');
  t.teardown(() => pair!.side.stdin.end()); // its subshell waits for a go line that never comes
  const nl = adoptingNetlink(pair!);
  t.teardown(() => nl.close());
  await t.rejects(nl.json('ip', ns, ['addr', 'show', 'dev', 'lo']), { code: 'E_EXEC_NOT_FOUND' });
});

t.test('no shell: the early helpers are spawned one each, as before the pair', async (t) => {
  t.equal(spawnPair(['cat', []], ['cat', []], '/krt-no-such-shell'), undefined, 'the pair is not started');
  const ns = await tempNetns(t, 'pair');
  const env = { CNI_COMMAND: 'ADD', CNI_NETNS: ns.path };
  startEarlyHelpers(env, '/krt-no-such-shell');
  const ip = takeEarlyHelper('ip', ns)!;
  t.ok(ip instanceof RawChild, 'ip: a RawChild of its own');
  t.same(ip.spawnargs, ['ip', ...helperArgv('ip', ns, true)[1]]);
  const tc = takeEarlyHelper('tc', ns)!;
  t.ok(tc instanceof RawChild, 'tc: a RawChild of its own, started when taken');
  t.equal(cmdline(tc.pid!).split(' ')[0], 'tc');
  for (const c of [ip, tc]) {
    holdEventLoop(c, true); // the early helpers hold no event loop: this test waits for them
    const gone = exited(c);
    c.stdin!.end();
    await gone;
  }
  startEarlyHelpers(env);
  const side = takeEarlyHelper('tc', ns)!;
  t.ok(side instanceof SideChild, 'with a shell: the tc helper is the side of a pair');
  const main = takeEarlyHelper('ip', ns)!;
  holdEventLoop(main, true);
  holdEventLoop(side, true);
  const gone = [exited(main), exited(side)];
  main.stdin!.end();
  side.stdin!.end();
  await Promise.all(gone);
});

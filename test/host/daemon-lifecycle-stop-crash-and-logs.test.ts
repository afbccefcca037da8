import { readlinkSync } from 'node:fs';
import t from 'tap';
import { pino } from 'pino';
import { isAlive, startDaemon, wrapArgv, type DaemonExit } from '../../host/daemon.js';
import { parseProcStat, readProcStat } from '../../host/proc.js';
import { sleep } from '../../host/retry.js';

interface LogLine {
  msg: string;
  daemon?: string;
  daemonPid?: number;
  stream?: string;
  level: number;
}

function capturingLogger(): { log: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino(
    { level: 'debug' },
    {
      write: (s: string) => {
        lines.push(JSON.parse(s) as LogLine);
      },
    },
  );
  return { log, lines };
}

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

t.test("the pid is the daemon's own through the setpriv wrapper, and stop() ends it as expected", async (t) => {
  const { log } = capturingLogger();
  const d = await startDaemon({ name: 'sleeper', file: 'sleep', args: ['1000'], log });
  t.teardown(() => d.stop({ graceMs: 0 }));
  // setpriv execs the target: the same pid ends up running sleep.
  await until('exec of sleep', () => /sleep$/.test(readlinkSync(`/proc/${d.pid}/exe`)));
  const st = readProcStat(d.pid);
  t.equal(st?.comm, 'sleep');
  t.equal(d.startTime, st?.startTime, 'start time is field 22 of /proc/PID/stat');
  t.ok(isAlive(d.record()));
  t.same(d.record(), { name: 'sleeper', pid: d.pid, startTime: st!.startTime, file: 'sleep', args: ['1000'] });
  let events = 0;
  d.on('exit', () => events++);
  const exit = await d.stop({ graceMs: 1000 });
  t.same(exit, { code: null, signal: 'SIGTERM', expected: true });
  t.notOk(d.running);
  t.notOk(isAlive(d.record()), 'record no longer alive');
  const again = await d.stop();
  t.same(again, exit, 'stopping twice is harmless and returns the same exit');
  t.equal(events, 1, 'one exit event');
});

t.test('an unexpected exit fires the exit event at once with the stderr tail, lines logged with name and pid', async (t) => {
  const { log, lines } = capturingLogger();
  const script =
    'process.stdout.write("out-line\\n"); for (let i = 0; i < 80; i++) process.stderr.write(`err ${i}\\n`); setTimeout(() => process.exit(3), 50);';
  const d = await startDaemon({ name: 'crasher', file: process.execPath, args: ['-e', script], log, stderrLines: 20 });
  const exit = await new Promise<DaemonExit>((r) => d.once('exit', r));
  t.same(exit, { code: 3, signal: null, expected: false });
  t.equal(d.stderrTail().length, 20, 'keeps the configured number of lines');
  t.equal(d.stderrTail().at(-1), 'err 79');
  t.same(d.stderrTail(2), ['err 78', 'err 79']);
  const out = lines.find((l) => l.msg === 'out-line');
  t.equal(out?.daemon, 'crasher');
  t.equal(out?.daemonPid, d.pid);
  t.equal(out?.stream, 'stdout');
  t.equal(lines.filter((l) => l.stream === 'stderr').length, 80, 'every stderr line forwarded');
  t.ok(
    lines.some((l) => l.level >= 50 && /exited unexpectedly/.test(l.msg)),
    'crash logged as error',
  );
  t.same(await d.stop(), exit, 'stop after a crash is harmless');
});

t.test('SIGKILL from outside is reported as an unexpected exit', async (t) => {
  const d = await startDaemon({ name: 'victim', file: 'sleep', args: ['1000'], log: capturingLogger().log });
  t.teardown(() => d.stop({ graceMs: 0 }));
  const got = new Promise<DaemonExit>((r) => d.once('exit', r));
  process.kill(d.pid, 'SIGKILL');
  t.same(await got, { code: null, signal: 'SIGKILL', expected: false });
});

t.test('stop escalates to SIGKILL when SIGTERM is ignored', async (t) => {
  const { log, lines } = capturingLogger();
  const d = await startDaemon({ name: 'stubborn', file: 'sh', args: ['-c', "trap '' TERM; echo ready; exec sleep 1000"], log });
  t.teardown(() => d.stop({ graceMs: 0 }));
  await until('ready line', () => lines.some((l) => l.msg === 'ready'));
  const exit = await d.stop({ graceMs: 200 });
  t.same(exit, { code: null, signal: 'SIGKILL', expected: true });
  t.ok(lines.some((l) => /did not exit after SIGTERM/.test(l.msg)));
});

t.test('repeated SIGTERM reaches a daemon that missed the first one, so no SIGKILL is needed', async (t) => {
  const { log, lines } = capturingLogger();
  // Exits on the second TERM only (like a daemon whose first TERM landed before a blocking accept).
  const script = "n=0; trap 'n=$((n+1)); [ $n -ge 2 ] && exit 7' TERM; echo ready; while :; do sleep 0.05; done";
  const d = await startDaemon({ name: 'deaf-once', file: 'sh', args: ['-c', script], log });
  t.teardown(() => d.stop({ graceMs: 0 }));
  await until('ready line', () => lines.some((l) => l.msg === 'ready'));
  const exit = await d.stop({ graceMs: 5000, termRepeatMs: 100 });
  t.same(exit, { code: 7, signal: null, expected: true }, 'exited by its own handler, not SIGKILL');
});

t.test('a missing program or namespace is a typed error before anything runs', async (t) => {
  const log = capturingLogger().log;
  await t.rejects(startDaemon({ name: 'ghost', file: '/nonexistent/krt-daemon', args: [], log }), {
    code: 'E_EXEC_NOT_FOUND',
    message: /krt-daemon/,
  });
  await t.rejects(startDaemon({ name: 'ghost', file: 'sleep', args: ['1'], log, netnsPath: '/run/netns/krt-missing-ns' }), {
    code: 'E_NETNS_NOT_FOUND',
    message: /krt-missing-ns/,
  });
});

t.test('wrapper argv: setpriv outermost, then nsenter, then the daemon', async (t) => {
  t.same(wrapArgv('qemu', ['-S'], { pdeathsig: true, netnsPath: '/run/netns/x' }), [
    'setpriv',
    ['--pdeathsig', 'SIGKILL', '--', 'nsenter', '--net=/run/netns/x', '--', 'qemu', '-S'],
  ]);
  t.same(wrapArgv('qemu', ['-S'], { pdeathsig: false }), ['qemu', ['-S']]);
});

t.test('/proc/PID/stat parsing survives spaces and parentheses in the command name', async (t) => {
  const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
  fields[0] = 'S';
  fields[1] = '77';
  fields[19] = '123456';
  const st = parseProcStat(`4242 (we ird) (name) ${fields.join(' ')}`);
  t.same(st, { pid: 4242, comm: 'we ird) (name', state: 'S', ppid: 77, startTime: 123456 });
  t.equal(parseProcStat('garbage'), undefined);
});

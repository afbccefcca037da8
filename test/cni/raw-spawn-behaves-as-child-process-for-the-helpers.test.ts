import { type ChildProcess, spawn } from 'node:child_process';
import t from 'tap';
import { RawChild } from '../../cni/raw-spawn.js';
import { CoprocessNetlink, helperArgv } from '../../host/netlink.js';
import { tempNetns } from '../helpers/netns.js';

/**
 * cni/raw-spawn.ts starts kata-cni's two helpers without node:child_process. Side by side with
 * node:child_process, for what CoprocessNetlink uses: stdin lines in, stdout and stderr text out
 * (UTF-8 split across chunks too), exit code and signal, kill, pid, spawnargs; a command that does
 * not exist is not started (the caller then spawns through node:child_process, which reports it);
 * and a RawChild serves as an adopted helper of CoprocessNetlink.
 */
interface Seen {
  stdout: string;
  stderr: string;
  code: number | null;
  signal: string | null;
}

function drive(child: ChildProcess | RawChild, input: string[], end: boolean): Promise<Seen> {
  return new Promise((resolve) => {
    const seen: Seen = { stdout: '', stderr: '', code: null, signal: null };
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      seen.stdout += d;
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      seen.stderr += d;
    });
    child.stdin!.on('error', () => {});
    for (const l of input) child.stdin!.write(l);
    if (end) child.stdin!.end();
    child.on('exit', (code: number | null, signal: string | null) => {
      seen.code = code;
      seen.signal = signal;
      // stdio may still hold data after 'exit' (as with child_process): give it a moment.
      setTimeout(() => resolve(seen), 100);
    });
  });
}

const SCRIPT = 'while read l; do echo "out:$l"; echo "err:$l" >&2; done; printf "h\\303\\251\\n"; exit 3';

t.test('lines in, stdout/stderr out, exit code: the same as node:child_process', async (t) => {
  const lines = ['one\n', 'two\n', 'dr\u00e9i\n'];
  const raw = RawChild.spawn('sh', ['-c', SCRIPT]);
  t.ok(raw, 'started through the bindings');
  const viaRaw = await drive(raw!, lines, true);
  const viaCp = await drive(spawn('sh', ['-c', SCRIPT], { stdio: ['pipe', 'pipe', 'pipe'] }), lines, true);
  t.same(viaRaw, viaCp, JSON.stringify(viaRaw));
  t.same(viaRaw, {
    stdout: 'out:one\nout:two\nout:dr\u00e9i\nh\u00e9\n',
    stderr: 'err:one\nerr:two\nerr:dr\u00e9i\n',
    code: 3,
    signal: null,
  });
  t.same(raw!.spawnargs, ['sh', '-c', SCRIPT]);
  t.equal(raw!.spawnfile, 'sh');
  t.type(raw!.pid, 'number');
});

t.test('a character split across two writes, and text after the last newline, come out whole', async (t) => {
  // \303\251 is é: its two bytes in two writes, 50 ms apart (two reads); "tail" has no newline.
  const script = 'printf "dr\\303"; sleep 0.05; printf "\\251i\\nsecond\\n"; sleep 0.05; printf tail';
  const raw = RawChild.spawn('sh', ['-c', script])!;
  const chunks: string[] = [];
  raw.stdout.setEncoding('utf8').on('data', (d: string) => chunks.push(d));
  const viaRaw = await drive(raw, [], true);
  const viaCp = await drive(spawn('sh', ['-c', script], { stdio: ['pipe', 'pipe', 'pipe'] }), [], true);
  t.equal(viaRaw.stdout, 'dr\u00e9i\nsecond\ntail', 'whole');
  t.equal(viaRaw.stdout, viaCp.stdout, 'as node:child_process gives it');
  t.notOk(
    chunks.some((c) => c.includes('\ufffd')),
    `no replacement character in any chunk: ${JSON.stringify(chunks)}`,
  );
});

t.test('what a pipe reads before it has a data listener is held, EOF too, and comes when one is added', async (t) => {
  const raw = RawChild.spawn('sh', ['-c', 'printf "one\\ntwo\\n"; printf err >&2'])!;
  const watched: string[] = [];
  raw.stderr.watch((b) => watched.push(b.toString('latin1')));
  const ended: string[] = [];
  raw.stdout.on('end', () => ended.push('stdout'));
  await new Promise<void>((r) => raw.on('exit', () => setTimeout(r, 100)));
  t.same(ended, [], 'no end yet: nobody has read the data before it');
  t.same(watched, ['err'], 'watch saw the stderr chunk as it was read');
  const seen: string[] = [];
  raw.stdout.setEncoding('utf8').on('data', (d: string) => seen.push(`data ${d}`));
  raw.stdout.on('end', () => seen.push('end'));
  t.same(seen, [], 'delivered after the listener is added, not inside on()');
  await new Promise((r) => setImmediate(r));
  t.same(seen, ['data one\ntwo\n', 'end'], 'then the held data, then the end');
  t.same(ended, ['stdout'], 'the earlier end listener sees it then too');
});

t.test('kill: SIGKILL ends it with that signal, as with node:child_process', async (t) => {
  const raw = RawChild.spawn('sleep', ['30'])!;
  const done = drive(raw, [], false);
  t.ok(raw.kill('SIGKILL'));
  const seen = await done;
  t.same({ code: seen.code, signal: seen.signal }, { code: null, signal: 'SIGKILL' });
  t.equal(raw.signalCode, 'SIGKILL');
  t.notOk(raw.kill('SIGKILL'), 'killing an exited child does nothing');
});

t.test('a command that does not exist is not started', async (t) => {
  t.equal(RawChild.spawn('krt-no-such-command', []), undefined);
});

t.test('a RawChild started with helperArgv is adopted by CoprocessNetlink and answers its requests', async (t) => {
  const ns = await tempNetns(t, 'raw');
  const [file, args] = helperArgv('ip', ns, true);
  const raw = RawChild.spawn(file, args)!;
  const nl = new CoprocessNetlink(500, { ipDetails: true, adopt: () => raw as unknown as ChildProcess });
  t.teardown(() => nl.close());
  t.same(await nl.batch('ip', ns, ['tuntap add dev kraw0 mode tap', 'link set dev nonexistent0 up']), [
    null,
    'Cannot find device "nonexistent0"',
  ]);
  const l = await nl.json<{ ifname: string; linkinfo?: { info_kind?: string } }[]>('ip', ns, ['-details', 'addr', 'show', 'dev', 'kraw0']);
  t.equal(l[0]?.linkinfo?.info_kind, 'tun');
  t.equal(nl.helperPid('ip', ns), raw.pid, 'the raw child is the helper');
  await nl.release(ns);
  t.not(raw.exitCode, null, 'released: the helper got EOF and exited');
});

t.test('extra pipes: fds 3-5 are a second stdin, stdout and stderr; shownAs is the command line reported', async (t) => {
  const script = 'read l <&3; echo "out:$l" >&4; echo "err:$l" >&5; echo main';
  const raw = RawChild.spawn('sh', ['-c', script], { extra: 3, shownAs: ['ip', ['-batch', '-']] })!;
  t.same(raw.spawnargs, ['ip', '-batch', '-']);
  t.equal(raw.spawnfile, 'ip');
  const [w, r, e] = raw.extra!;
  const got = { out: '', err: '' };
  r.setEncoding('utf8').on('data', (d: string) => {
    got.out += d;
  });
  e.setEncoding('utf8').on('data', (d: string) => {
    got.err += d;
  });
  const rEnd = new Promise((res) => r.on('end', res));
  w.end('x\n');
  const seen = await drive(raw, [], true);
  await rEnd;
  t.same(got, { out: 'out:x\n', err: 'err:x\n' });
  t.equal(seen.stdout, 'main\n');
  t.equal(seen.code, 0);
  t.equal(RawChild.spawn('sh', ['-c', 'true'])!.extra, undefined, 'no extra pipes unless asked');
});

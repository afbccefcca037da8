import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readProcStat } from '../../host/proc.js';
import { acquireLock } from '../../host/file-lock.js';
import { StateStore } from '../../runtime-core/state/store.js';
import { tempDir } from '../helpers/runtime-core.js';

const lockModule = fileURLToPath(new URL('../../host/file-lock.js', import.meta.url));

/** A node child running `body` with acquireLock imported; prints lines on stdout. */
function child(body: string): {
  proc: ChildProcess;
  lines: string[];
  line: (re: RegExp) => Promise<string>;
  exited: Promise<number | null>;
} {
  const proc = spawn(
    process.execPath,
    ['--input-type=module', '-e', `const { acquireLock } = await import(${JSON.stringify(lockModule)});\n${body}`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  let buf = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(l);
      for (const w of [...waiters])
        if (w.re.test(l)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(l);
        }
    }
  });
  const exited = new Promise<number | null>((r) => proc.on('exit', (c) => r(c)));
  const line = (re: RegExp): Promise<string> => {
    const found = lines.find((l) => re.test(l));
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      waiters.push({ re, resolve });
      void exited.then(() => reject(new Error(`child exited before printing ${re}; got ${JSON.stringify(lines)}`)));
    });
  };
  return { proc, lines, line, exited };
}

t.test('a live holder in another process makes acquire wait, then fail with E_LOCKED naming it', async (t) => {
  const path = join(tempDir(t, 'lock'), 'locks', 'sb.lock');
  const holder = child(
    `const l = await acquireLock(${JSON.stringify(path)}, { purpose: 'sandbox up' }); console.log('held'); setTimeout(async () => { await l.release(); console.log('released'); }, 60000);`,
  );
  t.teardown(() => {
    holder.proc.kill('SIGKILL');
  });
  await holder.line(/^held$/);
  const err = await acquireLock(path, { waitMs: 200 }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.match(err, { code: 'E_LOCKED', message: new RegExp(`held by pid ${holder.proc.pid} \\(sandbox up\\)`) });
  t.same((err as { details: { owner: { pid: number } } }).details.owner.pid, holder.proc.pid);
});

t.test('a waiter gets the lock as soon as the holder releases it', async (t) => {
  const path = join(tempDir(t, 'lock'), 'sb.lock');
  const holder = child(
    `const l = await acquireLock(${JSON.stringify(path)}); console.log('held'); setTimeout(async () => { await l.release(); console.log('released'); }, 300);`,
  );
  t.teardown(() => {
    holder.proc.kill('SIGKILL');
  });
  await holder.line(/^held$/);
  const l = await acquireLock(path, { waitMs: 20_000 });
  t.ok(holder.lines.includes('released'), 'acquired only after the release');
  t.equal(JSON.parse(readFileSync(path, 'utf8')).pid, process.pid);
  await l.release();
  t.notOk(existsSync(path), 'release removes the file');
  await l.release();
  t.pass('release is idempotent');
});

t.test('a lock left by a killed process is stale and is taken over', async (t) => {
  const path = join(tempDir(t, 'lock'), 'sb.lock');
  const holder = child(`await acquireLock(${JSON.stringify(path)}); console.log('held'); setInterval(() => {}, 1000);`);
  await holder.line(/^held$/);
  holder.proc.kill('SIGKILL');
  await holder.exited;
  t.equal(JSON.parse(readFileSync(path, 'utf8')).pid, holder.proc.pid, "the dead process's lock is still on disk");
  const l = await acquireLock(path, { waitMs: 0 });
  t.equal(JSON.parse(readFileSync(path, 'utf8')).pid, process.pid, 'taken over at once, without waiting');
  await l.release();
});

t.test('a lock whose pid now belongs to another process (different start time) is stale', async (t) => {
  const path = join(tempDir(t, 'lock'), 'sb.lock');
  const me = readProcStat(process.pid)!;
  // Our own pid, but a start time that is not ours: a recycled pid.
  writeFileSync(path, JSON.stringify({ pid: process.pid, startTime: me.startTime - 1, acquiredAt: new Date(0).toISOString() }));
  const l = await acquireLock(path, { waitMs: 0 });
  t.equal(JSON.parse(readFileSync(path, 'utf8')).startTime, me.startTime);
  await l.release();
});

t.test('a half-written lock is respected while fresh and broken once old', async (t) => {
  const path = join(tempDir(t, 'lock'), 'sb.lock');
  writeFileSync(path, '');
  await t.rejects(acquireLock(path, { waitMs: 100 }), { code: 'E_LOCKED', message: /still writing it/ });
  const old = new Date(Date.now() - 60_000);
  utimesSync(path, old, old);
  const l = await acquireLock(path, { waitMs: 0 });
  t.ok(l.held);
  await l.release();
});

t.test('release leaves alone a lock that is no longer ours', async (t) => {
  const path = join(tempDir(t, 'lock'), 'sb.lock');
  const l = await acquireLock(path);
  writeFileSync(path, JSON.stringify({ pid: 1, startTime: readProcStat(1)?.startTime ?? 0, acquiredAt: 'x' }));
  await l.release();
  t.ok(existsSync(path), "someone else's lock file kept");
});

t.test('processes racing for one stale lock never hold it together', async (t) => {
  const dir = tempDir(t, 'lock');
  const path = join(dir, 'sb.lock');
  const journal = join(dir, 'journal');
  writeFileSync(journal, '');
  // Start from a stale lock, so every racer goes through the breaking path.
  writeFileSync(path, JSON.stringify({ pid: 999999999, startTime: 1, acquiredAt: 'x' }));
  const racers = Array.from({ length: 4 }, (_v, i) =>
    child(`
    const { appendFileSync } = await import('node:fs');
    for (let k = 0; k < 15; k++) {
      const l = await acquireLock(${JSON.stringify(path)}, { waitMs: 60000 });
      appendFileSync(${JSON.stringify(journal)}, 'in ${i}\\n');
      await new Promise((r) => setTimeout(r, 1));
      appendFileSync(${JSON.stringify(journal)}, 'out ${i}\\n');
      await l.release();
    }
    console.log('done');
  `),
  );
  t.teardown(() => {
    for (const r of racers) r.proc.kill('SIGKILL');
  });
  const codes = await Promise.all(racers.map((r) => r.exited));
  t.same(codes, [0, 0, 0, 0]);
  const lines = readFileSync(journal, 'utf8').trim().split('\n');
  t.equal(lines.length, 4 * 15 * 2);
  let inside: string | undefined;
  let overlaps = 0;
  for (const l of lines) {
    const [what, who] = l.split(' ');
    if (what === 'in') {
      if (inside !== undefined) overlaps++;
      inside = who;
    } else {
      if (inside !== who) overlaps++;
      inside = undefined;
    }
  }
  t.equal(overlaps, 0, 'every "in" is followed by the same racer\'s "out"');
  t.notOk(existsSync(path), 'nothing held at the end');
  t.notOk(existsSync(`${path}.break`), 'no break file left');
});

t.test('the store keeps locks apart from sandbox directories', async (t) => {
  const store = new StateStore(tempDir(t, 'lock'));
  await store.withLock('sb', async () => {
    await store.create('sb');
    await store.remove('sb');
    t.ok(existsSync(store.lockPath('sb')), 'removing the sandbox kept the held lock');
  });
  t.notOk(existsSync(store.lockPath('sb')));
});

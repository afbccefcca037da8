import { statSync, readlinkSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { isAlive, killFromRecord, setprivAvailable, startDaemon, type DaemonRecord } from '../../host/daemon.js';
import { run } from '../../host/exec.js';
import { silentLogger } from '../../host/log.js';
import { sleep } from '../../host/retry.js';
import { tempNetns } from '../helpers/netns.js';

const maker = fileURLToPath(new URL('./daemon-orphan-maker.js', import.meta.url));

async function orphan(how: 'exit' | 'crash', pdeathsig: boolean): Promise<DaemonRecord> {
  const r = await run(process.execPath, [maker, how, pdeathsig ? 'pdeathsig' : 'none'], { reject: false, timeoutMs: 20_000 });
  const line = r.stdout.trim().split('\n')[0] ?? '';
  return JSON.parse(line) as DaemonRecord;
}

async function eventually(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(10);
  }
  return cond();
}

t.test('a daemon left behind by an exited parent is found from its record and stopped', async (t) => {
  const rec = await orphan('exit', false);
  t.teardown(() => killFromRecord(rec, { graceMs: 0 }));
  t.ok(isAlive(rec), 'the orphan outlived its parent (no pdeathsig)');
  t.equal(await killFromRecord(rec, { graceMs: 2000 }), 'terminated');
  t.notOk(isAlive(rec));
  t.equal(await killFromRecord(rec, { graceMs: 2000 }), 'not-running', 'second kill is harmless');
});

t.test('a record whose pid now belongs to another process is never signalled', async (t) => {
  const d = await startDaemon({ name: 'bystander', file: 'sleep', args: ['1000'], log: silentLogger() });
  t.teardown(() => d.stop({ graceMs: 0 }));
  const stale: DaemonRecord = { ...d.record(), startTime: d.startTime - 1 };
  t.notOk(isAlive(stale));
  t.equal(await killFromRecord(stale, { graceMs: 0 }), 'not-running');
  t.ok(d.running, 'the process holding the pid is untouched');
  t.ok(isAlive(d.record()));
});

const hasSetpriv = await setprivAvailable();

t.test(
  'with pdeathsig the daemon dies when its parent is SIGKILLed',
  { skip: hasSetpriv ? false : 'setpriv --pdeathsig not available (util-linux)' },
  async (t) => {
    const rec = await orphan('crash', true);
    t.teardown(() => killFromRecord(rec, { graceMs: 0 }));
    t.ok(await eventually(() => !isAlive(rec), 5000), 'daemon gone after the parent was killed');
  },
);

t.test('without pdeathsig the daemon survives a SIGKILLed parent (what killFromRecord is for)', async (t) => {
  const rec = await orphan('crash', false);
  t.teardown(() => killFromRecord(rec, { graceMs: 0 }));
  await sleep(100);
  t.ok(isAlive(rec));
  t.equal(await killFromRecord(rec, { graceMs: 0 }), 'killed');
  t.notOk(isAlive(rec));
});

t.test('netnsPath runs the daemon inside that namespace, with its own pid', async (t) => {
  const ns = await tempNetns(t, 'dmn');
  const d = await startDaemon({ name: 'in-ns', file: 'sleep', args: ['1000'], log: silentLogger(), netnsPath: ns.path });
  t.teardown(() => d.stop({ graceMs: 0 }));
  t.ok(
    await eventually(() => {
      try {
        return /sleep$/.test(readlinkSync(`/proc/${d.pid}/exe`));
      } catch {
        return false;
      }
    }, 5000),
    'pid runs sleep after setpriv and nsenter exec',
  );
  t.equal(statSync(`/proc/${d.pid}/ns/net`).ino, statSync(ns.path).ino, 'in the namespace');
  t.not(statSync(`/proc/${d.pid}/ns/net`).ino, statSync('/proc/self/ns/net').ino, 'not in ours');
  await d.stop({ graceMs: 1000 });
  t.notOk(isAlive(d.record()));
});

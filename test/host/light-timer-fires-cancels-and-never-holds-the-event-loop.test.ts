import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { lightTimer } from '../../host/light-timer.js';

/**
 * host/light-timer.ts: the helpers' watchdog and idle timer without Node's timers. It fires once
 * after its time while something holds the event loop, not at all once cancelled (cancel twice is
 * harmless), and, like an unref'd timer, never keeps a process alive by itself.
 */
const MODULE = join(dirname(dirname(dirname(fileURLToPath(import.meta.url)))), 'host/light-timer.js');

t.test('fires once after its time; a cancelled one never fires', async (t) => {
  const start = Date.now();
  let fired = 0;
  let cancelledFired = false;
  const c = lightTimer(50, () => {
    cancelledFired = true;
  });
  c.cancel();
  c.cancel();
  let bound: NodeJS.Timeout | undefined;
  await new Promise<void>((resolve) => {
    lightTimer(120, () => {
      fired++;
      resolve();
    });
    bound = setTimeout(() => resolve(), 3000); // holds the loop meanwhile; the bound of the test
  });
  clearTimeout(bound);
  const took = Date.now() - start;
  t.equal(fired, 1, 'fired');
  t.ok(took >= 110, `not before its time (${took} ms)`);
  await new Promise((r) => setTimeout(r, 100));
  t.equal(fired, 1, 'once');
  t.equal(cancelledFired, false, 'the cancelled timer did not fire');
});

t.test('it does not hold the event loop: a process with only a pending timer exits at once', async (t) => {
  const code = `import(${JSON.stringify(MODULE)}).then(({ lightTimer }) => { lightTimer(5000, () => console.log('fired')); console.log('armed'); });`;
  const start = Date.now();
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout, 'armed\n', 'exited without firing');
  t.ok(Date.now() - start < 4000, 'long before the 5 s');
});

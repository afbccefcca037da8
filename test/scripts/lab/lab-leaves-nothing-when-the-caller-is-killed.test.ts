import t from 'tap';
import { labRunDir, startLab, waitNoLeftovers } from '../../helpers/lab.js';

/** Start a lab whose command prints "started" and then waits; resolve once "started" arrived. */
async function startedLab(t: { teardown(fn: () => unknown): void }): Promise<ReturnType<typeof startLab>> {
  const lab = startLab(t, ['--', 'sh', '-c', 'echo started; sleep 600; echo never']);
  await new Promise<void>((resolve, reject) => {
    lab.proc.stdout!.on('data', () => {
      if (lab.stdout().includes('started\n')) resolve();
    });
    lab.proc.once('close', (code) => reject(new Error(`lab.sh exited ${code} before the command started: ${lab.stderr()}`)));
  });
  return lab;
}

t.test('output is streamed while the command runs; SIGTERM stops the VM and cleans up', async (t) => {
  const lab = await startedLab(t);
  t.equal(lab.proc.exitCode, null, '"started" arrived while the command was still running');
  t.notMatch(lab.stdout(), /never/);
  const runDir = labRunDir(lab.stderr());
  t.ok(runDir);
  lab.proc.kill('SIGTERM');
  const r = await lab.done;
  t.equal(r.code, 143, '128 + SIGTERM');
  t.match(r.stderr, /^lab\.sh: stopped by SIGTERM; the VM was stopped$/m);
  t.same(await waitNoLeftovers(runDir!), [], 'no QEMU, no virtiofsd, no run directory, no pid file');
});

t.test('SIGKILL of the lab process: QEMU and virtiofsd die with it, the reaper removes the rest', async (t) => {
  const lab = await startedLab(t);
  const runDir = labRunDir(lab.stderr());
  t.ok(runDir);
  lab.proc.kill('SIGKILL');
  const r = await lab.done;
  t.equal(r.signal, 'SIGKILL');
  t.same(await waitNoLeftovers(runDir!), [], 'no QEMU, no virtiofsd, no run directory, no pid file');
});

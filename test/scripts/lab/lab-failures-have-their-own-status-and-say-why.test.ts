import t from 'tap';
import { runLab, waitNoLeftovers } from '../../helpers/lab.js';

const EXIT_TIMEOUT = 124;
const EXIT_LAB_FAILED = 125;

t.test('a VM that cannot boot: 125 and a message, nothing left', async (t) => {
  const r = await runLab(t, ['--mem', '24', '--', 'true']);
  t.equal(r.code, EXIT_LAB_FAILED);
  t.match(r.stderr, /^lab\.sh: the VM failed to boot/m);
  if (r.runDir) t.same(await waitNoLeftovers(r.runDir), []);
});

t.test('a boot slower than --boot-timeout: 125 and a message', async (t) => {
  const r = await runLab(t, ['--boot-timeout', '1', '--', 'true']);
  t.equal(r.code, EXIT_LAB_FAILED);
  t.match(r.stderr, /^lab\.sh: the VM did not boot within 1 s \(--boot-timeout\)$/m);
  if (r.runDir) t.same(await waitNoLeftovers(r.runDir), []);
});

t.test('a module that does not exist: 125 naming it; the command does not run', async (t) => {
  const r = await runLab(t, ['--modules', 'no_such_module_krt', '--', 'sh', '-c', 'echo ran']);
  t.equal(r.code, EXIT_LAB_FAILED);
  t.match(r.stderr, /^lab\.sh: modprobe no_such_module_krt failed: .*not found/m);
  t.notMatch(r.stdout, /ran/);
  if (r.runDir) t.same(await waitNoLeftovers(r.runDir), []);
});

t.test('a command that outlives --timeout: 124, the VM stopped, nothing left', async (t) => {
  const r = await runLab(t, ['--timeout', '60', '--', 'sh', '-c', 'echo sleeping; sleep 600']);
  t.equal(r.code, EXIT_TIMEOUT);
  t.match(r.stdout, /^sleeping$/m, 'output before the timeout was relayed');
  t.match(r.stderr, /^lab\.sh: sh -c echo sleeping; sleep 600 did not finish within 60 s \(--timeout\); the VM was stopped$/m);
  t.ok(r.runDir);
  t.same(await waitNoLeftovers(r.runDir!), []);
});

t.test('usage errors: 2, before any VM', async (t) => {
  for (const args of [['true'], ['--mem', 'lots', '--', 'true'], ['--bogus', '--', 'true'], ['--env', '1X=y', '--', 'true']]) {
    const r = await runLab(t, args);
    t.equal(r.code, 2, `lab.sh ${args.join(' ')}`);
    t.match(r.stderr, /^lab\.sh: .*\nusage: scripts\/lab\.sh/m);
    t.equal(r.runDir, undefined, 'no VM was started');
  }
});

t.test('a command that is not there: its status (127), as a shell would', async (t) => {
  const r = await runLab(t, ['--', 'krt-no-such-command']);
  t.equal(r.code, 127);
  t.match(r.stderr, /krt-no-such-command/);
});

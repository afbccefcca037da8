import t from 'tap';
import { runLab, waitNoLeftovers } from '../../helpers/lab.js';

/**
 * The ipvlan endpoint test skips on a kernel without ipvlan (this host's). Here it runs in the
 * kernel lab (Debian's kernel, `--modules ipvlan`), and this test fails unless it really ran there
 * and passed: a skip inside the lab is a failure.
 */
const INNER = 'dist/test/plugins/network/every-endpoint-kind-attaches-checks-and-detaches.test.js';
const SUBTEST = 'ipvlan + tcfilter';

t.test(`"${SUBTEST}" of ${INNER} passes in the kernel lab`, async (t) => {
  const r = await runLab(t, [
    '--modules',
    'ipvlan',
    '--env',
    'TAP_TIMEOUT=900',
    '--env',
    `TAP_GREP=^${SUBTEST.replace(/[+]/g, '\\+')}$`,
    '--',
    'node',
    INNER,
  ]);
  if (r.code !== 0) t.comment(`inner TAP:\n${r.stdout}\nlab stderr:\n${r.stderr}`);
  t.equal(r.code, 0, 'the inner test file passed in the lab');
  const line = r.stdout.split('\n').find((l) => new RegExp(`^(not )?ok \\d+ - ${SUBTEST.replace(/[+]/g, '\\+')}( |$)`).test(l));
  t.ok(line, `the inner TAP has a result for "${SUBTEST}"`);
  t.match(line ?? '', /^ok /, 'it passed');
  t.notMatch(line ?? '', /# (SKIP|TODO)/, 'it ran: not skipped (a skip in the lab is a failure here)');
  t.notMatch(r.stdout, /^not ok /m, 'no inner failure');
  t.notMatch(r.stdout, /ipvlan test skipped/, "the lab's kernel has ipvlan");
  if (r.runDir) t.same(await waitNoLeftovers(r.runDir), [], 'nothing of the VM is left');
});

/**
 * The kernel NBD bindings need the nbd driver, which this host's kernel lacks. This test runs
 * nbd-client-connects-checks-and-disconnects-kernel-devices in the kernel lab (Debian's kernel,
 * `scripts/lab.sh --modules nbd`) and fails unless it really ran and passed there: a skip inside
 * the lab is a failure here.
 */
import t from 'tap';
import { tapFileInLab } from '../helpers/lab.js';

const INNER = 'dist/test/host/nbd-client-connects-checks-and-disconnects-kernel-devices.test.js';

t.test(`${INNER} passes in the kernel lab`, async (t) => {
  const r = await tapFileInLab(t, INNER, ['nbd']);
  t.match(r.stdout, /^ok \d+ - netlink/m, 'netlink mode ran');
  t.match(r.stdout, /^ok \d+ - persist/m, 'persist mode ran');
  t.match(r.stdout, /^ok \d+ - foreground/m, 'foreground mode ran');
});

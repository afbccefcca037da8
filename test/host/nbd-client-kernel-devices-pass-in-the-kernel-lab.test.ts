/**
 * The kernel NBD bindings need the nbd driver, which this host's kernel lacks. This test runs
 * nbd-client-connects-checks-and-disconnects-kernel-devices in the kernel lab (Debian's kernel,
 * `scripts/lab.sh --modules nbd`) and fails unless it really ran and passed there: a skip inside
 * the lab is a failure here.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const REPO = join(import.meta.dirname, '..', '..', '..');
const LAB = join(REPO, 'scripts', 'lab.sh');
const INNER = 'dist/test/host/nbd-client-connects-checks-and-disconnects-kernel-devices.test.js';

function lab(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(LAB, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

t.test(
  `${INNER} passes in the kernel lab`,
  { skip: !existsSync(LAB) && 'scripts/lab.sh (the kernel lab VM) is not in this tree yet' },
  async (t) => {
    const r = await lab(['--modules', 'nbd', '--env', 'TAP_TIMEOUT=1200', '--', 'node', INNER]);
    if (r.code !== 0) t.comment(`inner TAP:\n${r.stdout}\nlab stderr:\n${r.stderr}`);
    t.equal(r.code, 0, 'the inner file passed in the lab');
    t.match(r.stdout, /^ok \d+ - netlink/m, 'netlink mode ran');
    t.match(r.stdout, /^ok \d+ - persist/m, 'persist mode ran');
    t.match(r.stdout, /^ok \d+ - foreground/m, 'foreground mode ran');
    t.notMatch(r.stdout, /^\s*not ok /m, 'no inner failure');
    t.notMatch(r.stdout, /^\s*ok \d+ .*# (SKIP|TODO)/m, 'nothing skipped inside the lab');
  },
);

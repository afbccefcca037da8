import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { run } from '../../host/exec.js';
import { REPO, tempDir } from '../cni/helpers/cni-runtime.js';

/**
 * install-cni and install-shim (scripts/install-args.mjs): --help prints the usage on stdout and
 * exits 0, an unknown argument or an option without its value exits 2 with the usage on stderr,
 * and none of these installs anything (a --help once installed into /opt/cni/bin).
 */
const SCRIPTS: [string, string, string][] = [
  ['install-cni', 'cni/build/install.mjs', 'kata-cni'],
  ['install-shim', 'shim/build/install.mjs', 'containerd-shim-kata-resources-v2'],
];

for (const [name, script, file] of SCRIPTS) {
  t.test(`${name}: --help, unknown arguments and missing values install nothing`, async (t) => {
    const bin = tempDir(t, 'install-args');
    const call = (args: string[]) => run(process.execPath, [join(REPO, script), ...args], { reject: false, env: { CNI_BIN_DIR: bin } });
    const help = await call(['--bin-dir', bin, '--help']);
    t.equal(help.exitCode, 0, '--help: exit 0');
    t.match(help.stdout, new RegExp(`^usage: npm run ${name}`), 'the usage on stdout');
    for (const args of [['--bin-dir', bin, '--bogus'], ['--bin-dir'], ['bin', bin]]) {
      const r = await call(args);
      t.equal(r.exitCode, 2, `${args.join(' ')}: exit 2`);
      t.match(
        r.stderr,
        new RegExp(`^${name}: (unknown argument|--bin-dir wants a value)[^]*usage: npm run ${name}`),
        'why, then the usage',
      );
    }
    t.same(readdirSync(bin), [], 'nothing was installed');
    const ok = await call(['--bin-dir', bin]);
    t.equal(ok.exitCode, 0, ok.stderr);
    t.ok(existsSync(join(bin, file)), 'with good arguments it installs');
  });
}

/**
 * Redteam D9: the loader read whatever path it was given: a FIFO blocked forever, /dev/zero ate
 * memory. Now only a regular file of sane size is read, and the CLI says why at once.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../../runtime-core/config/load-config.js';
import { cli } from '../../helpers/sandbox.js';
import { tempDir } from '../../helpers/runtime-core.js';

t.test('a FIFO, a character device, a directory and a 5 MiB file are E_CONFIG naming what they are', async (t) => {
  const dir = tempDir(t, 'cfg');
  const fifo = join(dir, 'c.toml');
  execFileSync('mkfifo', [fifo]);
  const big = join(dir, 'big.toml');
  writeFileSync(big, '');
  truncateSync(big, 5 * 1024 * 1024);
  for (const [path, why] of [
    [fifo, /not a regular file \(a FIFO\)/],
    ['/dev/zero', /not a regular file \(a character device\)/],
    [dir, /not a regular file \(a directory\)/],
    [big, /5242880 bytes, more than/],
    [join(dir, 'missing.toml'), /ENOENT/],
  ] as const) {
    t.throws(() => loadConfig(path), { code: 'E_CONFIG', message: why }, `${path}: refused`);
  }
  // Through the CLI: it returns (no hang, bounded by the test's own timeout) with exit 1.
  const r = await cli(['sandbox', 'list', '--config', fifo]);
  t.equal(r.code, 1);
  t.match(r.stderr, /E_CONFIG: .*c\.toml: cannot read the configuration file: it is not a regular file \(a FIFO\)/);
});

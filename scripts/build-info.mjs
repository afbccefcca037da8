// Bakes the version and the commit into dist/build-info.json at build time, so `kata-resources
// --version` names the commit it was built from (a clean clone has .git; without git: "unknown").
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const git = (...args) => {
  try {
    return execFileSync('git', ['-C', root, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
};
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const commit = git('rev-parse', 'HEAD') ?? 'unknown';
const dirty = commit !== 'unknown' && (git('status', '--porcelain', '--untracked-files=no') ?? '') !== '';
const info = { version, commit, dirty, builtAt: new Date().toISOString() };
mkdirSync(join(root, 'dist'), { recursive: true });
writeFileSync(join(root, 'dist', 'build-info.json'), `${JSON.stringify(info, null, 2)}\n`);

/**
 * A victim directory for the share-boundary tests: what a guest's symlinks point at. It holds a
 * tmpfs mount with a file, an empty file and an empty directory (what a careless unmount or
 * "remove empty mount points" would destroy). victimIntact() checks all of it is still there.
 * Unmounted and removed when the test ends.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { run } from '../../host/exec.js';
import { mountsUnder, readMountinfo, unmountAllUnder } from '../../host/mounts.js';

export interface Victim {
  dir: string;
  /** The tmpfs's source name in mountinfo. */
  fsName: string;
}

export async function makeVictim(t: { teardown(fn: () => unknown): void }, tag: string): Promise<Victim> {
  const dir = mkdtempSync(`/tmp/krt-victim-${tag}-`);
  t.teardown(async () => {
    await unmountAllUnder(dir).catch(() => {});
    if (mountsUnder(dir).length === 0) await run('rm', ['-rf', '--one-file-system', dir], { reject: false });
  });
  const fsName = `krt-vic-${tag}-${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
  mkdirSync(join(dir, 'm'));
  await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', fsName, join(dir, 'm')]);
  writeFileSync(join(dir, 'm/f'), 'data');
  mkdirSync(join(dir, 'sub/empty'), { recursive: true });
  writeFileSync(join(dir, 'sub/lock'), '');
  return { dir, fsName };
}

export function victimIntact(t: Test, v: Victim, when: string): void {
  t.ok(
    readMountinfo().some((m) => m.source === v.fsName),
    `${when}: the victim's tmpfs is still mounted`,
  );
  t.equal(readFileSync(join(v.dir, 'm/f'), 'utf8'), 'data', `${when}: its file is intact`);
  t.same(readdirSync(v.dir).sort(), ['m', 'sub'], `${when}: nothing made or removed in the victim`);
  t.same(readdirSync(join(v.dir, 'sub')).sort(), ['empty', 'lock'], `${when}: its empty file and directory are there`);
}

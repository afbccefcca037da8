import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { dmLs } from '../../../devmapper/dmsetup.js';
import { listLoops } from '../../../host/loop.js';

/** dm devices named after the pool (the pool, `<pool>-thin-N`, containerd's `<pool>-snap-N`). */
export async function dmDevicesOf(pool: string): Promise<string[]> {
  return (await dmLs()).map((d) => d.name).filter((n) => n === pool || n.startsWith(`${pool}-`));
}

/** Everything of a pool still on the host: dm devices, loop devices on its files, the files, its state. */
export async function poolLeftovers(pool: string, stateDir: string, files: readonly string[]): Promise<string[]> {
  const left = (await dmDevicesOf(pool)).map((n) => `dm device ${n}`);
  for (const l of await listLoops()) if (files.includes(l.backingFile)) left.push(`loop ${l.device} on ${l.backingFile}`);
  for (const f of files) if (existsSync(f)) left.push(`file ${f}`);
  if (existsSync(join(stateDir, 'devmapper', `${pool}.json`))) left.push(`state ${pool}.json`);
  return left;
}

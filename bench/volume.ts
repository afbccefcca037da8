/**
 * Benchmark: block volume hotplug on a running sandbox (the embedded guest under TCG).
 *
 * One sandbox (booted with a virtio-scsi controller, so both drivers are there) and two ext4 image
 * files. Per round, interleaved: `addVolume` as virtio-blk and as virtio-scsi (request to mounted in
 * the guest: blockdev-add, device_add on a root port or the SCSI bus, the agent waiting for the
 * device and mounting it) and `removeVolume` of each (agent unmount, device_del until
 * DEVICE_DELETED, blockdev-del); and as the reference, in the same round, one guest round trip that
 * mounts and unmounts a tmpfs through the agent (what a mount costs in the guest by itself). Prints
 * median (min-max) per step and its ratio to the reference.
 *
 *   node dist/bench/volume.js [--runs 5]
 *
 * Everything lives in /tmp/kr-bench-vol-* and the sandbox's own namespace, removed at the end, on
 * failure and on Ctrl-C. Results go to stdout, logs to stderr.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { run } from '../host/exec.js';
import { rootLogger } from '../host/log.js';
import { loadConfig } from '../runtime-core/config/load-config.js';
import { resolveGuestImage } from '../runtime-core/sandbox/guest-image.js';
import { Sandbox } from '../runtime-core/sandbox/sandbox.js';
import { addVolume, removeVolume } from '../runtime-core/sandbox/volume-hotplug.js';
import { StateStore } from '../runtime-core/state/store.js';
import { fmt, msSince, now, summarize } from './lib/stats.js';

const log = rootLogger().child({ bench: 'volume' });
const out = (s = ''): void => {
  process.stdout.write(`${s}\n`);
};

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = now();
  await fn();
  return msSince(t0);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' } } });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs wants a positive integer');
  const dir = mkdtempSync(join(tmpdir(), 'kr-bench-vol-'));
  let sb: Sandbox | undefined;
  const cleanup = async (): Promise<void> => {
    await sb?.down().catch((e: unknown) => log.error({ err: (e as Error).message }, 'down failed'));
    sb = undefined;
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));
  try {
    const cfgFile = join(dir, 'configuration.toml');
    writeFileSync(cfgFile, `[runtime]\nstate_dir = "${join(dir, 'state')}"\n[hypervisor.qemu]\nblock_device_driver = "virtio-scsi"\n`);
    const config = loadConfig(cfgFile, { log });
    const images = { blk: join(dir, 'blk.img'), scsi: join(dir, 'scsi.img') };
    for (const img of Object.values(images)) {
      await run('truncate', ['-s', '64M', img]);
      await run('mkfs.ext4', ['-q', '-F', img]);
    }
    process.stderr.write('booting the sandbox\n');
    sb = await Sandbox.up({
      id: `kr-bench-vol-${process.pid}`,
      config,
      store: new StateStore(join(dir, 'state'), log),
      log,
      guest: () => resolveGuestImage(config),
    });
    const s = sb;
    const reference = (): Promise<unknown> =>
      s.agent.exec(['sh', '-c', 'mkdir -p /run/krb && mount -t tmpfs krb /run/krb && umount /run/krb'], { timeoutMs: 60_000 });
    const steps = {
      'reference: tmpfs mount+umount in the guest': [] as number[],
      'add virtio-blk (to mounted)': [] as number[],
      'del virtio-blk': [] as number[],
      'add virtio-scsi (to mounted)': [] as number[],
      'del virtio-scsi': [] as number[],
    };
    const one = async (record: boolean): Promise<void> => {
      const r = await timed(reference);
      const ab = await timed(() => addVolume(s, { source: images.blk, name: 'vb', driver: 'virtio-blk' }));
      const db = await timed(() => removeVolume(s, 'vb'));
      const as = await timed(() => addVolume(s, { source: images.scsi, name: 'vs', driver: 'virtio-scsi' }));
      const ds = await timed(() => removeVolume(s, 'vs'));
      if (!record) return;
      const v = Object.values(steps);
      for (const [i, x] of [r, ab, db, as, ds].entries()) v[i]!.push(x);
    };
    process.stderr.write('warm-up round\n');
    await one(false);
    for (let i = 0; i < runs; i++) {
      process.stderr.write(`round ${i + 1}/${runs}\n`);
      await one(true);
    }
    const ref = summarize(steps['reference: tmpfs mount+umount in the guest']).median;
    out(
      `volume hotplug bench: ${runs} rounds, load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')} (${cpus().length} CPUs), TCG guest`,
    );
    out('');
    out(`${'step'.padEnd(46)} ${'median (min-max) ms'.padEnd(24)} x reference`);
    for (const [name, xs] of Object.entries(steps)) {
      const m = summarize(xs);
      out(`${name.padEnd(46)} ${`${fmt(m.median)} (${fmt(m.min)}-${fmt(m.max)})`.padEnd(24)} ${(m.median / ref).toFixed(1)}`);
    }
  } finally {
    await cleanup();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench:volume failed: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});

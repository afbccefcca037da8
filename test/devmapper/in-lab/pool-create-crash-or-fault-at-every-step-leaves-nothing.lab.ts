/**
 * Runs inside the kernel lab (test/devmapper/pool-create-recovers-from-a-crash-at-every-step-in-the-kernel-lab.test.ts):
 * `pool create` failing at each step undoes itself; killed at each step (also between an effect
 * and its record, where only the journal's intent knows about it), `pool remove` cleans up.
 */
import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createPool, removePool } from '../../../devmapper/index.js';
import { KataError } from '../../../host/errors.js';
import { cli, explain, tempRuntime } from '../../helpers/sandbox.js';
import { poolLeftovers } from './pool-leftovers.js';

const STEPS = [
  'state',
  'data-file-unrecorded',
  'data-file',
  'data-loop-unrecorded',
  'data-loop',
  'metadata-file-unrecorded',
  'metadata-file',
  'metadata-loop-unrecorded',
  'metadata-loop',
  'metadata-zeroed',
  'pool-device-unrecorded',
  'pool-device',
];

t.test('a failure at any step of pool create undoes what was done', async (t) => {
  const rt = tempRuntime(t);
  for (const step of STEPS) {
    const pool = `krt-fault-${STEPS.indexOf(step)}`;
    const files = [join(rt.dir, `${pool}.data`), join(rt.dir, `${pool}.meta`)];
    t.teardown(() => removePool({ stateDir: rt.stateDir, name: pool }).catch(() => {}));
    await t.rejects(
      createPool({
        stateDir: rt.stateDir,
        name: pool,
        source: { kind: 'files', dataFile: files[0]!, metadataFile: files[1]!, sizeBytes: 32 * 1024 ** 2 },
        checkpoint: (s) => {
          if (s === step) throw new KataError('E_INTERNAL', `fault at ${s}`);
        },
      }),
      { message: `fault at ${step}` },
      `fails at ${step}`,
    );
    t.same(await poolLeftovers(pool, rt.stateDir, files), [], `nothing left after a failure at ${step}`);
  }
});

t.test('killed at any step of pool create, pool remove leaves nothing', async (t) => {
  const rt = tempRuntime(t);
  for (const step of STEPS) {
    const pool = `krt-crash-${STEPS.indexOf(step)}`;
    const files = [join(rt.dir, `${pool}.data`), join(rt.dir, `${pool}.meta`)];
    t.teardown(() => removePool({ stateDir: rt.stateDir, name: pool }).catch(() => {}));
    const r = await cli(
      [
        'devmapper',
        'pool',
        'create',
        pool,
        '--data-file',
        files[0]!,
        '--metadata-file',
        files[1]!,
        '--size',
        '32M',
        '--state-dir',
        rt.stateDir,
      ],
      {
        env: { KATA_RESOURCES_CRASH: step },
      },
    );
    if (r.signal !== 'SIGKILL') t.comment(explain(r));
    t.equal(r.signal, 'SIGKILL', `killed at ${step}`);
    t.ok(existsSync(join(rt.stateDir, 'devmapper', `${pool}.json`)), `the state says what was begun (${step})`);
    await removePool({ stateDir: rt.stateDir, name: pool });
    t.same(await poolLeftovers(pool, rt.stateDir, files), [], `pool remove after a crash at ${step} leaves nothing`);
  }
});

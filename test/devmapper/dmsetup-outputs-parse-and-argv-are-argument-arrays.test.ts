import t from 'tap';
import {
  parseAllTables,
  parseInfo,
  parseLs,
  parseTableLines,
  parseTargets,
  parseThinPoolStatus,
  parseThinStatus,
} from '../../devmapper/dm-status.js';
import { dmArgv, validateDmName } from '../../devmapper/dmsetup.js';

// Output shapes as dmsetup 1.02.185 (Debian 12) prints them for a loop-file pool in the kernel lab.
t.test('thin-pool status: transaction, metadata and data usage, mode, flags, low watermark', async (t) => {
  const s = parseThinPoolStatus('0 524288 thin-pool 3 31/4096 17/4096 - rw no_discard_passdown queue_if_no_space - 1024\n');
  t.same(s, {
    transactionId: 3,
    usedMetadataBlocks: 31,
    totalMetadataBlocks: 4096,
    usedDataBlocks: 17,
    totalDataBlocks: 4096,
    heldMetadataRoot: undefined,
    mode: 'rw',
    flags: ['no_discard_passdown', 'queue_if_no_space'],
    metadataLowWatermark: 1024,
  });
  const full = parseThinPoolStatus(
    '0 524288 thin-pool 9 40/4096 4096/4096 12 out_of_data_space discard_passdown error_if_no_space needs_check 1024',
  );
  t.equal(full.mode, 'out_of_data_space');
  t.equal(full.heldMetadataRoot, '12');
  t.same(full.flags, ['discard_passdown', 'error_if_no_space', 'needs_check']);
  // Older kernels print no low watermark.
  t.equal(parseThinPoolStatus('0 8 thin-pool 0 1/2 0/4 - rw discard_passdown queue_if_no_space -').metadataLowWatermark, undefined);
});

t.test('a failed pool or thin device is an E_DEVMAPPER error saying so', async (t) => {
  t.throws(() => parseThinPoolStatus('0 524288 thin-pool Fail'), { code: 'E_DEVMAPPER', message: /reports "Fail"/ });
  t.throws(() => parseThinStatus('0 131072 thin Fail'), { code: 'E_DEVMAPPER' });
  t.throws(() => parseThinPoolStatus('0 524288 linear 7:0 0'), { code: 'E_DEVMAPPER', message: /unexpected thin-pool status/ });
  t.throws(() => parseThinPoolStatus('0 524288 thin-pool 1 x/4096 1/2 - rw'), { code: 'E_DEVMAPPER' });
});

t.test('thin status: mapped sectors and the highest mapped sector, "-" when nothing is mapped', async (t) => {
  t.same(parseThinStatus('0 131072 thin 2048 4095'), { mappedSectors: 2048, highestMappedSector: 4095 });
  t.same(parseThinStatus('0 131072 thin 0 -'), { mappedSectors: 0, highestMappedSector: undefined });
});

t.test('tables, device lists, targets, info', async (t) => {
  t.same(parseTableLines('0 131072 thin 254:0 1\n'), [{ start: 0, length: 131072, target: 'thin', args: ['254:0', '1'] }]);
  const all = parseAllTables(
    'krt-pool: 0 524288 thin-pool 7:1 7:0 128 1024 1 skip_block_zeroing\nkrt-pool-thin-1: 0 131072 thin 254:0 1\n',
  );
  t.same([...all.keys()], ['krt-pool', 'krt-pool-thin-1']);
  t.same(all.get('krt-pool')?.[0]?.args, ['7:1', '7:0', '128', '1024', '1', 'skip_block_zeroing']);
  t.same(parseAllTables('No devices found\n').size, 0);
  t.same(parseLs('krt-pool\t(254:0)\nkrt-pool-thin-1\t(254, 1)\n'), [
    { name: 'krt-pool', major: 254, minor: 0 },
    { name: 'krt-pool-thin-1', major: 254, minor: 1 },
  ]);
  t.same(parseLs('No devices found\n'), []);
  t.same(
    parseTargets('thin-pool        v1.22.0\nthin             v1.22.0\nerror            v1.5.0\n').map((x) => x.name),
    ['thin-pool', 'thin', 'error'],
  );
  t.match(parseInfo('krt-pool-thin-1|254|1|L-sw|0|1|\n'), {
    name: 'krt-pool-thin-1',
    major: 254,
    minor: 1,
    suspended: true,
    readOnly: false,
    openCount: 0,
  });
  t.throws(() => parseInfo('garbage'), { code: 'E_DEVMAPPER' });
});

t.test('argv builders: one argument per word, the table as one argument', async (t) => {
  t.same(
    dmArgv.create('p', [
      { start: 0, length: 8, target: 'thin-pool', args: ['/dev/loop1', '/dev/loop0', '128', '32768', '1', 'skip_block_zeroing'] },
    ]),
    ['create', 'p', '--table', '0 8 thin-pool /dev/loop1 /dev/loop0 128 32768 1 skip_block_zeroing'],
  );
  t.same(dmArgv.message('p', 0, ['create_snap', 2, 1]), ['message', 'p', '0', 'create_snap', '2', '1']);
  t.same(dmArgv.remove('p', { retry: true }), ['remove', '--retry', 'p']);
  t.same(dmArgv.suspend('p'), ['suspend', 'p']);
  t.same(dmArgv.ls('thin'), ['ls', '--target', 'thin']);
  t.same(dmArgv.mknodes('p'), ['mknodes', 'p']);
});

t.test('device-mapper names: no slash, no spaces, at most 127 bytes', async (t) => {
  t.equal(validateDmName('krt-pool_1.x'), 'krt-pool_1.x');
  for (const bad of ['', 'a/b', 'a b', '-x', 'x'.repeat(128)])
    t.throws(() => validateDmName(bad), { code: 'E_INVALID_NAME' }, JSON.stringify(bad));
});

import t from 'tap';
import { allocateThinId, checkThinId, parseThinId } from '../../devmapper/device-ids.js';
import { formatSize, parseSize } from '../../devmapper/sizes.js';
import { defaultMetadataSize } from '../../devmapper/thin-pool.js';

t.test('sizes: binary units with or without i/B, sectors, bytes; bad ones are E_INVALID_ARGUMENT', async (t) => {
  t.equal(parseSize('64k', 'x'), 65536);
  t.equal(parseSize('64KiB', 'x'), 65536);
  t.equal(parseSize('10GB', 'x'), 10 * 1024 ** 3);
  t.equal(parseSize('128s', 'x'), 65536);
  t.equal(parseSize('4096', 'x'), 4096);
  for (const bad of ['', '0', '1.5G', 'lots', '-1M', '12sb'])
    t.throws(() => parseSize(bad, '--size'), { code: 'E_INVALID_ARGUMENT', message: /--size/ });
  t.equal(formatSize(65536), '64KiB');
  t.equal(formatSize(1536 * 1024 ** 2), '1536MiB');
  t.equal(formatSize(3 * 1024 ** 3), '3GiB');
});

t.test('thin ids: 24 bits; the allocator skips used ids and wraps', async (t) => {
  t.equal(parseThinId('7'), 7);
  t.throws(() => parseThinId('x'), { code: 'E_INVALID_ARGUMENT' });
  t.throws(() => checkThinId(2 ** 24), { code: 'E_INVALID_ARGUMENT' });
  t.equal(allocateThinId({ nextId: 1, used: new Set() }), 1);
  t.equal(allocateThinId({ nextId: 1, used: new Set([1, 2, 4]) }), 3);
  t.equal(allocateThinId({ nextId: 2 ** 24 - 1, used: new Set([2 ** 24 - 1]) }), 1, 'wraps at the limit');
});

t.test('metadata for a sparse file: 4 x 48 bytes per data block, at least 16 MiB, at most 16 GiB', async (t) => {
  t.equal(defaultMetadataSize(1024 ** 3, 65536), 16 * 1024 ** 2, 'a small pool gets the minimum');
  t.equal(defaultMetadataSize(100 * 1024 ** 3, 65536), 300 * 1024 ** 2, '100 GiB of 64 KiB blocks');
  t.equal(defaultMetadataSize(1024 ** 5, 65536), 16 * 1024 ** 3, 'capped where the kernel stops using it');
});

import t from 'tap';
import { randomBytes } from '../../cni/build/crypto-lite.js';

/** The bundle's stand-in for node:crypto's randomBytes: right length, random, errors like the original. */
t.test('randomBytes returns buffers of the asked size with different content each call', async (t) => {
  for (const n of [0, 1, 3, 4, 6, 64]) t.equal(randomBytes(n).length, n);
  const seen = new Set(Array.from({ length: 50 }, () => randomBytes(8).toString('hex')));
  t.equal(seen.size, 50, '50 draws of 8 bytes are all different');
  const ones = [...randomBytes(4096)].reduce((a, b) => a + b.toString(2).split('1').length - 1, 0);
  t.ok(ones > 4096 * 8 * 0.45 && ones < 4096 * 8 * 0.55, `about half the bits set (${ones} of ${4096 * 8})`);
});

t.test('a bad size is a RangeError', async (t) => {
  t.throws(() => randomBytes(-1), RangeError);
  t.throws(() => randomBytes(1.5), RangeError);
});

import t, { type Test } from 'tap';
import { encodeHeader, type Frame, type FrameHeader, FrameReader, HEADER_LENGTH, MESSAGE_LENGTH_MAX } from '../../ttrpc/frame.js';

function frameBytes(streamId: number, type: number, data: Buffer): Buffer {
  return Buffer.concat([encodeHeader({ length: data.length, streamId, type, flags: 0 }), data]);
}

/** Deterministic bytes (a counter), so a shifted or mixed-up payload shows. */
function payload(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

function collect(max?: number): { reader: FrameReader; frames: Frame[]; oversized: FrameHeader[] } {
  const frames: Frame[] = [];
  const oversized: FrameHeader[] = [];
  const reader = new FrameReader(
    { frame: (f) => frames.push({ ...f, data: Buffer.from(f.data) }), oversized: (h) => oversized.push(h) },
    max,
  );
  return { reader, frames, oversized };
}

const SIZES = [0, 1, 9, 10, 11, 300, 70 * 1024, 3];
const stream = Buffer.concat(SIZES.map((n, i) => frameBytes(2 * i + 1, 1 + (i % 2), payload(n, i))));

function check(t: Test, frames: Frame[]): void {
  t.equal(frames.length, SIZES.length, 'every frame parsed');
  SIZES.forEach((n, i) => {
    const f = frames[i]!;
    t.ok(
      f.streamId === 2 * i + 1 && f.type === 1 + (i % 2) && f.length === n && f.data.equals(payload(n, i)),
      `frame ${i} (${n} bytes) intact`,
    );
  });
}

t.test('all frames in one chunk', async (t) => {
  const c = collect();
  c.reader.push(stream);
  check(t, c.frames);
  t.equal(c.reader.pending, 0);
});

t.test('one byte at a time', async (t) => {
  const c = collect();
  for (let i = 0; i < stream.length; i++) c.reader.push(stream.subarray(i, i + 1));
  check(t, c.frames);
});

t.test('chunks cut at every size from 2 to 23 bytes and at 64 KiB', async (t) => {
  for (const step of [2, 3, 5, 7, 10, 11, 13, 23, 65536]) {
    const c = collect();
    for (let i = 0; i < stream.length; i += step) c.reader.push(stream.subarray(i, i + step));
    t.equal(c.frames.length, SIZES.length, `step ${step}: ${c.frames.length} frames`);
    t.ok(
      c.frames.every((f, i) => f.data.equals(payload(SIZES[i]!, i))),
      `step ${step}: payloads intact`,
    );
  }
});

t.test('a 5 MiB frame is dropped without being buffered, and the next frame still parses', async (t) => {
  const big = frameBytes(7, 1, payload(5 << 20, 99));
  const after = frameBytes(9, 1, payload(100, 5));
  const all = Buffer.concat([frameBytes(5, 1, payload(20, 1)), big, after]);
  const c = collect();
  let maxPending = 0;
  for (let i = 0; i < all.length; i += 65536) {
    c.reader.push(all.subarray(i, i + 65536));
    maxPending = Math.max(maxPending, c.reader.pending);
  }
  t.same(c.oversized, [{ length: 5 << 20, streamId: 7, type: 1, flags: 0 }], 'told once, with the stream id and length');
  t.same(
    c.frames.map((f) => f.streamId),
    [5, 9],
    'the frames before and after it arrive',
  );
  t.ok(c.frames[1]!.data.equals(payload(100, 5)), 'the frame after it is intact');
  t.ok(maxPending <= 65536 + HEADER_LENGTH, `never held more than one chunk (max ${maxPending} bytes)`);
});

t.test('the limit is 4 MiB of data: exactly 4 MiB passes, one byte more is dropped', async (t) => {
  const c = collect();
  c.reader.push(frameBytes(1, 1, Buffer.alloc(MESSAGE_LENGTH_MAX)));
  c.reader.push(frameBytes(3, 1, Buffer.alloc(MESSAGE_LENGTH_MAX + 1)));
  t.same(
    c.frames.map((f) => f.length),
    [MESSAGE_LENGTH_MAX],
  );
  t.same(
    c.oversized.map((h) => h.streamId),
    [3],
  );
});

import t from 'tap';
import { EndMarker } from '../../../scripts/lab/end-marker.js';

const MARK = 'c0ffee15c0ffee15';

/** Feed the chunks, return what was forwarded and whether the marker was seen. */
function feed(chunks: string[]): { out: string; done: boolean; flushed: string } {
  const m = new EndMarker(Buffer.from(MARK));
  let out = '';
  for (const c of chunks) out += m.push(Buffer.from(c)).toString();
  return { out, done: m.done, flushed: m.flush().toString() };
}

t.test('the marker in one chunk ends the stream; what follows it is dropped', async (t) => {
  t.same(feed([`hello\n${MARK}late`]), { out: 'hello\n', done: true, flushed: '' });
});

t.test('a marker split over chunks is still found, byte by byte too', async (t) => {
  t.same(feed(['abc', MARK.slice(0, 5), MARK.slice(5)]), { out: 'abc', done: true, flushed: '' });
  t.same(feed(['x', ...MARK.split('')]), { out: 'x', done: true, flushed: '' });
});

t.test('only a tail that could start the marker is held back; a false start is released', async (t) => {
  const m = new EndMarker(Buffer.from(MARK));
  t.equal(m.push(Buffer.from('data c0ff')).toString(), 'data ', 'the possible start is held');
  t.equal(m.push(Buffer.from('X more')).toString(), 'c0ffX more', 'released once it cannot be the marker');
  t.notOk(m.done);
});

t.test('a stream that ends without the marker gives back what was held', async (t) => {
  t.same(feed(['out c0ffee']), { out: 'out ', done: false, flushed: 'c0ffee' });
});

t.test('nothing is forwarded after the marker', async (t) => {
  const m = new EndMarker(Buffer.from(MARK));
  m.push(Buffer.from(MARK));
  t.equal(m.push(Buffer.from('background noise')).length, 0);
});

import t from 'tap';
import { PassThrough, Writable } from 'node:stream';
import { InputStream, OutputStream } from '../../../guest/agent/streams.js';

const tick = (ms = 20): Promise<void> => new Promise((r) => setTimeout(r, ms));

t.test('reads return what is there, in order; EOF is empty', async (t) => {
  const src = new PassThrough();
  const s = new OutputStream(1024);
  s.attach(src);
  const r1 = s.read(3);
  const r2 = s.read(100);
  src.write('abcdef');
  t.equal((await r1).toString(), 'abc');
  t.equal((await r2).toString(), 'def', 'the second waiter gets the rest');
  src.end('gh');
  await s.ended;
  t.equal((await s.read(100)).toString(), 'gh', 'buffered data outlives EOF');
  t.equal((await s.read(100)).length, 0, 'then EOF');
});

t.test('a full buffer pauses the source; reading resumes it', async (t) => {
  const src = new PassThrough({ highWaterMark: 16 });
  const s = new OutputStream(64);
  s.attach(src);
  let accepted = 0;
  for (let i = 0; i < 20; i++) if (src.write(Buffer.alloc(16, i))) accepted++;
  await tick();
  t.ok(s.isBackpressured, 'paused at the bound');
  t.ok(s.buffered <= 64 + 16, `buffer stays bounded (${s.buffered})`);
  t.ok(accepted < 20, 'the writer sees backpressure');
  let got = 0;
  while (got < 320) got += (await s.read(1000)).length;
  t.equal(got, 320, 'nothing lost');
});

t.test('abandonWhenIdle ends a stream held open by someone else, keeping its data', async (t) => {
  const src = new PassThrough();
  const s = new OutputStream();
  s.attach(src);
  src.write('tail');
  s.abandonWhenIdle(50);
  const alive = setTimeout(() => {}, 5000); // the idle timer is unref'd (it must not keep an agent alive)
  await s.ended;
  clearTimeout(alive);
  t.ok(src.destroyed, 'source dropped');
  t.equal((await s.read(10)).toString(), 'tail');
  t.equal((await s.read(10)).length, 0);
});

t.test('InputStream: close waits for earlier writes; writes after close fail', async (t) => {
  const got: string[] = [];
  const sink = new Writable({
    write(c: Buffer, _e, cb) {
      setTimeout(() => {
        got.push(c.toString());
        cb();
      }, 10);
    },
  });
  const i = new InputStream();
  i.attach(sink);
  const w = [i.write(Buffer.from('a')), i.write(Buffer.from('b'))];
  await i.close();
  t.same(got, ['a', 'b'], 'both writes landed before the close finished');
  t.same(await Promise.all(w), [1, 1]);
  await t.rejects(i.write(Buffer.from('c')), { code: 'E_FAILED_PRECONDITION' });
});

import t from 'tap';
import { isoTime } from '../../cni/iso-time.js';

/** cni/iso-time.ts stands in for toISOString in the attachment record: the same text for any time of years 0-9999. */
t.test('the same text as toISOString, at the edges and at random times', async (t) => {
  const edges = [
    0, 1, 999, 1000, 951782400000 /* 2000-02-29 */, 1798761599999 /* 2026-12-31T23:59:59.999Z */, 253402300799999, -62167219200000,
  ];
  const random = Array.from({ length: 2000 }, () => Math.floor(Math.random() * 253402300799999));
  const wrong = [...edges, ...random].filter((ms) => isoTime(ms) !== new Date(ms).toISOString());
  t.same(wrong.slice(0, 5), [], 'no time is written differently');
  t.match(isoTime(), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'now, by default');
});

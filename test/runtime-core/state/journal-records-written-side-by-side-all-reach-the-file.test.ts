/**
 * Steps that run side by side (the network and virtiofsd) journal at the same time. Every record
 * must be in the file once their writes return: an older snapshot renamed over a newer one would
 * lose a record, and a crash then leaks the resource it describes (a tap left after `down`).
 */
import t from 'tap';
import { Journal } from '../../../runtime-core/sandbox/journal.js';
import { StateStore } from '../../../runtime-core/state/store.js';
import { tempDir } from '../../helpers/runtime-core.js';

const NS = { path: '/run/netns/krt-x', name: 'krt-x', created: true, dev: 4, ino: 4026532000 };

t.test('records journalled concurrently are all in the file when their writes return', async (t) => {
  const store = new StateStore(tempDir(t, 'state'));
  for (let round = 0; round < 5; round++) {
    const id = `sb${round}`;
    const s = await store.create(id, { netns: NS, configSource: '/etc/c.toml' });
    const j = new Journal(s, store);
    // A large first record makes its write the slowest, as the first of several overlapping ones.
    const writes = [j.intend('virtiofs', 'virtiofs', { root: `/run/kr/${'x'.repeat(4 * 1024 * 1024)}` })];
    for (let i = 0; i < 40; i++) writes.push(j.intend(`endpoint-${i}`, 'endpoint', { link: `eth${i}` } as never));
    await Promise.all(writes);
    const ids = (await store.load(id)).resources.map((r) => r.id);
    t.equal(ids.length, 41, `round ${round}: all 41 records are on disk`);
    t.ok(ids.includes('endpoint-39'), `round ${round}: the last record is on disk`);
  }
});

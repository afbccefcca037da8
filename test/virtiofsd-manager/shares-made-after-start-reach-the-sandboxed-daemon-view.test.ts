import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import t from 'tap';
import { parseMountinfo } from '../../host/mounts.js';
import { childPids } from '../../host/proc.js';
import { VirtiofsPlugin } from '../../virtiofsd-manager/plugin.js';
import { memLogger, pluginCtx, tempRoot, waitFor } from './helpers.js';

/**
 * What the guest sees is what the daemon sees. In sandbox=namespace the C daemon, once a client
 * has connected, forks a child into new mount/pid/net namespaces and pivots into `shared`. Shares
 * made after that must still reach the child's view (slave propagation) and keep their read-only
 * flag there. /proc/<child>/root walks the child's own mount tree, so no VM is needed to check it.
 */
t.test('volumes shared after the daemon sandboxed itself appear in its view, ro ones read-only', async (t) => {
  const root = tempRoot(t);
  const p = new VirtiofsPlugin();
  const ctx = pluginCtx('sb1', `${root}/run`, memLogger().log);
  const a = await p.attach(ctx, { root: `${root}/kr`, sandbox: 'namespace' });
  t.teardown(() => p.detach(ctx, a));
  const pid = a.resources.daemon.daemon!.pid;

  // Connect like a VMM and stay connected: the daemon then sets up its sandbox in a child.
  const client: Socket = connect(a.resources.daemon.socketPath);
  t.teardown(() => {
    client.destroy();
  });
  await new Promise<void>((r, j) => {
    client.once('connect', () => r());
    client.once('error', j);
  });
  const hdr = Buffer.alloc(12);
  hdr.writeUInt32LE(1, 0);
  hdr.writeUInt32LE(1, 4);
  client.write(hdr);
  await waitFor('sandboxed child', () => childPids(pid).length > 0);
  const child = childPids(pid)[0]!;
  await waitFor('child pivoted into shared', () => {
    try {
      return parseMountinfo(readFileSync(`/proc/${child}/mountinfo`, 'utf8')).some(
        (m) => m.mountPoint === '/' && m.root.endsWith('/sandboxes/sb1/mounts'),
      );
    } catch {
      return false;
    }
  });

  mkdirSync(`${root}/vol`);
  writeFileSync(`${root}/vol/hello`, 'from host');
  const ro = await p.shareVolume('sb1', { containerId: 'c1', source: `${root}/vol`, destination: '/config', readonly: true });
  const rw = await p.shareVolume('sb1', { containerId: 'c1', source: `${root}/vol`, destination: '/data', readonly: false });
  const view = `/proc/${child}/root`;
  const table = parseMountinfo(readFileSync(`/proc/${child}/mountinfo`, 'utf8'));
  const roMount = table.find((m) => m.mountPoint === `/${ro.name}`);
  t.ok(roMount, "ro volume mounted in the daemon's namespace");
  t.ok(roMount?.options.includes('ro'), 'with the ro flag there');
  t.ok(table.find((m) => m.mountPoint === `/${rw.name}`)?.options.includes('rw'), 'rw volume rw there');
  t.equal(readFileSync(`${view}/${ro.name}/hello`, 'utf8'), 'from host', 'readable in the daemon view');
  t.throws(() => writeFileSync(`${view}/${ro.name}/x`, 'no'), { code: 'EROFS' }, 'ro volume not writable in the daemon view');
  writeFileSync(`${view}/${rw.name}/from-daemon-view`, 'yes');
  t.equal(readFileSync(`${root}/vol/from-daemon-view`, 'utf8'), 'yes', 'rw write lands on the host');

  await p.unshare('sb1', ro);
  await waitFor(
    'unshare propagated',
    () => !parseMountinfo(readFileSync(`/proc/${child}/mountinfo`, 'utf8')).some((m) => m.mountPoint === `/${ro.name}`),
  );
  t.pass('unshare reaches the daemon view too');
});

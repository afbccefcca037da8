/**
 * D10 (red-team findings): a share whose record cannot be persisted (a full state file system)
 * must not stay live. The plugin runs the caller's persist step after the bind; when it fails, the
 * bind and its mount point are undone and the persist error is what the caller gets.
 */
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { KataError } from '../../host/errors.js';
import { mountsUnder } from '../../host/mounts.js';
import { VirtiofsPlugin } from '../../virtiofsd-manager/plugin.js';
import { memLogger, pluginCtx, tempRoot } from './helpers.js';

t.test('a failing persist undoes the share (volume and rootfs); a working one keeps it', async (t) => {
  const root = tempRoot(t);
  const p = new VirtiofsPlugin();
  const ctx = pluginCtx('sb1', join(root, 'run'), memLogger().log);
  const a = await p.attach(ctx, { root: join(root, 'kr') });
  t.teardown(() => p.detach(ctx, a));
  mkdirSync(join(root, 'vol'));
  const mounts = a.resources.shared.mountsDir;
  const before = mountsUnder(a.resources.shared.sandboxDir).length;
  const full = async (): Promise<void> => {
    throw new KataError('E_STATE', 'cannot save state.json: ENOSPC');
  };
  await t.rejects(
    p.shareVolume('sb1', { containerId: 'c1', source: join(root, 'vol'), name: 'x', readonly: true }, full),
    { code: 'E_STATE', message: /ENOSPC/ },
    'the persist error reaches the caller',
  );
  await t.rejects(p.shareRootfs('sb1', 'c1', join(root, 'vol'), full), { code: 'E_STATE' }, 'rootfs too');
  t.equal(mountsUnder(a.resources.shared.sandboxDir).length, before, 'no share mount stays (nor its copy in shared/)');
  t.same(readdirSync(mounts), [], 'no mount point stays');
  t.same(p.state('sb1').shared.shares, [], 'and no record');

  const saved: string[] = [];
  const ok = await p.shareVolume('sb1', { containerId: 'c1', source: join(root, 'vol'), name: 'x', readonly: true }, async (rec) => {
    saved.push(rec.name);
  });
  t.same(saved, ['x'], 'persist ran with the new record');
  t.ok(existsSync(ok.hostPath), 'the share is live');
  t.same(
    p.state('sb1').shared.shares.map((s) => s.name),
    ['x'],
  );
});

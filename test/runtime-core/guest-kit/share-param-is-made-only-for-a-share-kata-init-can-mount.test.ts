import t from 'tap';
import type { Storage } from '../../../host/agent-types.js';
import { shareAtBootParam, shareAtBootParams } from '../../../runtime-core/guest-kit/share-param.js';

const share: Storage = {
  driver: 'virtio-fs',
  driver_options: [],
  source: 'kataShared',
  fstype: 'virtiofs',
  options: [],
  mount_point: '/run/kata-containers/shared/containers/',
};

t.test("the sandbox's share becomes kata.sharefs=TAG:MOUNTPOINT", async (t) => {
  t.equal(shareAtBootParam(share), 'kata.sharefs=kataShared:/run/kata-containers/shared/containers/');
  t.equal(shareAtBootParam({ ...share, fstype: '' }), 'kata.sharefs=kataShared:/run/kata-containers/shared/containers/');
  t.same(shareAtBootParams([{ ...share, driver: 'blk' }, share]), ['kata.sharefs=kataShared:/run/kata-containers/shared/containers/']);
  t.same(shareAtBootParams([]), []);
});

t.test('what kata-init cannot mount, or the command line cannot carry, is left to the agent', async (t) => {
  for (const s of [
    { ...share, driver: '9p' },
    { ...share, fstype: 'ext4' },
    { ...share, options: ['ro'] },
    { ...share, source: '' },
    { ...share, source: 'a'.repeat(37) },
    { ...share, source: 'tag with space' },
    { ...share, mount_point: 'relative' },
    { ...share, mount_point: '/a/../b' },
    { ...share, mount_point: '/a:b' },
    { ...share, mount_point: '/a b' },
    { ...share, mount_point: `/${'a'.repeat(600)}` },
  ])
    t.equal(shareAtBootParam(s), undefined, JSON.stringify({ ...s, mount_point: s.mount_point.slice(0, 20) }));
});

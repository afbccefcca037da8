import t from 'tap';
import { tapFileInLab } from '../helpers/lab.js';

t.test("containerd 1.6's devmapper snapshotter on a pool from devmapper pool create; its rootfs is a block device", async (t) => {
  await tapFileInLab(t, 'dist/test/devmapper/in-lab/containerd-devmapper-snapshotter-uses-the-pool.lab.js', [
    'dm_mod',
    'dm_thin_pool',
    'loop',
    'overlay',
  ]);
});

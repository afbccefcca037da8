import t from 'tap';
import { tapFileInLab } from '../helpers/lab.js';

t.test('pool create/status/remove and thin create/snapshot/activate/deactivate/remove on a real pool', async (t) => {
  await tapFileInLab(t, 'dist/test/devmapper/in-lab/pool-thin-devices-and-block-rootfs-through-the-cli.lab.js', [
    'dm_mod',
    'dm_thin_pool',
    'loop',
  ]);
});

import t from 'tap';
import { tapFileInLab } from '../helpers/lab.js';

t.test('pool create: a failure at every step undoes itself; a kill at every step is cleaned by pool remove', async (t) => {
  await tapFileInLab(t, 'dist/test/devmapper/in-lab/pool-create-crash-or-fault-at-every-step-leaves-nothing.lab.js', [
    'dm_mod',
    'dm_thin_pool',
    'loop',
  ]);
});

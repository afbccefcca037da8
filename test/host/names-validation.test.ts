import t from 'tap';
import { validateIfName, validateId, validateMac } from '../../host/names.js';

t.test('interface names follow the kernel limits and are safe on a batch line', async (t) => {
  t.equal(validateIfName('eth0'), 'eth0');
  t.equal(validateIfName('tap0_kata'), 'tap0_kata');
  t.throws(() => validateIfName('a-name-of-16byte'), { code: 'E_INVALID_NAME', message: /16 bytes.*15/ });
  for (const bad of ['', 'has space', 'semi;colon', 'a/b', '..', 'x\ny', 'a:b']) {
    t.throws(() => validateIfName(bad), { code: 'E_INVALID_NAME' }, JSON.stringify(bad));
  }
});

t.test('ids refuse path tricks', async (t) => {
  t.equal(validateId('sb-1'), 'sb-1');
  for (const bad of ['../x', 'a/b', '', '.hidden', 'a..b']) t.throws(() => validateId(bad), { code: 'E_INVALID_NAME' });
});

t.test('MACs are normalised to lower case', async (t) => {
  t.equal(validateMac('AA:bb:CC:dd:EE:ff'), 'aa:bb:cc:dd:ee:ff');
  t.throws(() => validateMac('aa:bb'), { code: 'E_INVALID_ARGUMENT' });
});

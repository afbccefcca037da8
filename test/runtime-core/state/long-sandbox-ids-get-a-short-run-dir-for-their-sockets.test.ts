import t from 'tap';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { isKataError } from '../../../host/errors.js';
import { SOCKET_PATH_MAX } from '../../../host/names.js';
import { StateStore } from '../../../runtime-core/state/store.js';
import { tempDir } from '../../helpers/runtime-core.js';

/**
 * CRI's sandbox ids are 64 hex characters: under a state_dir like a test's /tmp/krt-*-XXXXXX/state
 * the sandbox directory alone leaves no room in the 107 bytes of a unix socket path. Such a sandbox
 * keeps its sockets in a short run directory (id prefix + hash), made with the state and removed with it.
 */
const CRI_ID = 'ce1637f8acb2c8616093fdd4cb80d12edacb1d4503d6a5660fb438febfe8c4bb';

t.test('a short id keeps its sockets in its own sandbox directory', async (t) => {
  const store = new StateStore(join(tempDir(t, 'rund'), 'state'));
  t.equal(store.runDir('sb1'), store.sandboxDir('sb1'));
});

t.test('a 64-hex id under a long state_dir: a short, recognisable run dir that really takes a socket', async (t) => {
  const stateDir = join(tempDir(t, 'rund'), 'kr-state-of-a-long-name');
  const store = new StateStore(stateDir);
  t.ok(
    Buffer.byteLength(join(store.sandboxDir(CRI_ID), 'virtiofsd.sock')) > SOCKET_PATH_MAX,
    'the sandbox directory is too long for sockets',
  );
  const run = store.runDir(CRI_ID);
  t.not(run, store.sandboxDir(CRI_ID));
  t.match(run, new RegExp(`^${stateDir}/run/${CRI_ID.slice(0, 12)}-[0-9a-f]{8}$`), 'named by the id prefix and a hash');
  t.equal(new StateStore(stateDir).runDir(CRI_ID), run, 'derived from the id alone (a crashed run finds it again)');
  t.not(store.runDir(`${CRI_ID.slice(0, 12)}${'0'.repeat(52)}`), run, 'another id with the same prefix gets another dir');

  await store.create(CRI_ID);
  t.equal(statSync(run).mode & 0o777, 0o700, 'made with the state, mode 0700');
  const sock = join(run, 'supervisor.sock');
  t.ok(Buffer.byteLength(sock) <= SOCKET_PATH_MAX);
  const srv = createServer();
  await new Promise<void>((resolve, reject) => srv.listen(sock, resolve).once('error', reject));
  await new Promise((r) => srv.close(r));

  await store.remove(CRI_ID);
  t.notOk(existsSync(run), 'removed with the sandbox');
  t.notOk(existsSync(store.sandboxDir(CRI_ID)));
  t.same(readdirSync(join(stateDir, 'run')), [], 'nothing else left in run/');
});

t.test('a state_dir too long even for the short run dir is refused at create, leaving nothing', async (t) => {
  const base = tempDir(t, 'rund');
  const stateDir = join(base, 'x'.repeat(90));
  mkdirSync(stateDir);
  const store = new StateStore(stateDir);
  const e = await store.create(CRI_ID).then(
    () => undefined,
    (err: unknown) => err,
  );
  t.ok(isKataError(e, 'E_SOCKET_PATH_TOO_LONG'), `E_SOCKET_PATH_TOO_LONG: ${(e as Error)?.message}`);
  t.match((e as Error).message, /choose a state_dir of at most \d+ bytes/, 'the message names the fix');
  t.notOk(existsSync(store.sandboxDir(CRI_ID)), 'no sandbox directory left');
  t.notOk(existsSync(join(stateDir, 'run')), 'no run directory made');
});

import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import t from 'tap';
import { clearFlavorCache } from '../../virtiofsd-manager/flavor.js';
import { resolveVirtiofsConfig } from '../../virtiofsd-manager/config.js';
import { VirtiofsPlugin } from '../../virtiofsd-manager/plugin.js';
import { VirtiofsDaemon } from '../../virtiofsd-manager/virtiofsd.js';
import { memLogger, pluginCtx, tempRoot, virtiofsdPidsMentioning } from './helpers.js';

function opts(root: string, over: Record<string, unknown> = {}) {
  mkdirSync(`${root}/src`, { recursive: true });
  return { ...resolveVirtiofsConfig(), sourceDir: `${root}/src`, socketPath: `${root}/run/vfs.sock`, log: memLogger().log, ...over };
}

t.test('missing binary -> E_CONFIG naming virtiofs.daemonPath', async (t) => {
  const root = tempRoot(t);
  await t.rejects(VirtiofsDaemon.start(opts(root, { daemonPath: `${root}/no-such-virtiofsd` })), {
    code: 'E_CONFIG',
    message: /virtiofs\.daemonPath = .*no-such-virtiofsd: no such file/,
  });
});

t.test('a binary that is not virtiofsd -> E_CONFIG naming virtiofs.daemonPath', async (t) => {
  const root = tempRoot(t);
  await t.rejects(VirtiofsDaemon.start(opts(root, { daemonPath: '/bin/true' })), {
    code: 'E_CONFIG',
    message: /virtiofs\.daemonPath = \/bin\/true does not look like virtiofsd/,
  });
});

t.test('unknown cache mode -> E_CONFIG naming virtiofs.cache', async (t) => {
  t.throws(() => resolveVirtiofsConfig({ cache: 'fast' }), { code: 'E_CONFIG', message: /virtiofs\.cache/ });
});

t.test('missing source dir -> E_CONFIG naming virtiofs.sourceDir', async (t) => {
  const root = tempRoot(t);
  await t.rejects(VirtiofsDaemon.start(opts(root, { sourceDir: `${root}/gone` })), {
    code: 'E_CONFIG',
    message: /virtiofs\.sourceDir .*gone does not exist/,
  });
});

t.test('socket path over 107 bytes -> E_SOCKET_PATH_TOO_LONG with the path', async (t) => {
  const root = tempRoot(t);
  const long = `${root}/${'d'.repeat(100)}/vfs.sock`;
  await t.rejects(VirtiofsDaemon.start(opts(root, { socketPath: long })), {
    code: 'E_SOCKET_PATH_TOO_LONG',
    message: new RegExp(`virtiofs\\.socketPath ${long} is \\d+ bytes`),
  });
  const ok = `${root}/${'d'.repeat(107 - root.length - 1 - 9)}/vfs.sock`;
  t.equal(Buffer.byteLength(ok), 107);
  const v = await VirtiofsDaemon.start(opts(root, { socketPath: ok, sandbox: 'chroot' }));
  t.pass('107 bytes is accepted');
  await v.stop();
});

t.test('plugin attach with a bad config creates nothing', async (t) => {
  const root = tempRoot(t);
  const p = new VirtiofsPlugin();
  const ctx = pluginCtx('sb-bad', `${root}/run`, memLogger().log);
  await t.rejects(p.attach(ctx, { root: `${root}/kr`, cache: 'metadata' }), {
    code: 'E_CONFIG',
    message: /virtiofs\.cache = metadata is not supported by the C virtiofsd/,
  });
  await t.rejects(p.attach(ctx, { root: `${root}/kr`, daemonPath: `${root}/nope` }), { code: 'E_CONFIG', message: /virtiofs\.daemonPath/ });
  await t.rejects(p.attach(pluginCtx('sb-bad', `${root}/${'r'.repeat(120)}`, memLogger().log), { root: `${root}/kr` }), {
    code: 'E_SOCKET_PATH_TOO_LONG',
  });
  t.notOk(existsSync(`${root}/kr`), 'no directory made');
  t.same(readdirSync(root), []);
});

t.test('a daemon that never listens is killed after startTimeoutMs: E_DAEMON_START with its stderr', async (t) => {
  const root = tempRoot(t);
  const fake = `${root}/fake-c-virtiofsd`;
  writeFileSync(
    fake,
    [
      '#!/bin/sh',
      'case "$1" in',
      '  --help) echo "usage: virtiofsd [options]"; echo "    -o source=PATH             shared directory tree"; exit 0;;',
      '  --version) echo "virtiofsd version 7.2.0"; exit 0;;',
      'esac',
      'echo "krt: stuck before listen" >&2',
      'exec sleep 1000',
    ].join('\n'),
    { mode: 0o755 },
  );
  clearFlavorCache();
  await t.rejects(VirtiofsDaemon.start(opts(root, { daemonPath: fake, startTimeoutMs: 300 })), {
    code: 'E_DAEMON_START',
    message: /did not listen on .* within 300 ms \(killed\); stderr: krt: stuck before listen/,
  });
  t.same(virtiofsdPidsMentioning(root), [], 'the stuck daemon was killed');
});

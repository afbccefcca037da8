import t from 'tap';
import { run } from '../../host/exec.js';
import { resolveVirtiofsConfig } from '../../virtiofsd-manager/config.js';
import { flavorFromText, type Flavor } from '../../virtiofsd-manager/flavor.js';
import { parseProcNetUnix, isListening } from '../../virtiofsd-manager/readiness.js';
import { daemonPidFiles, virtiofsdArgs } from '../../virtiofsd-manager/virtiofsd-args.js';
import { C_VIRTIOFSD, RUST_HELP } from './helpers.js';

const base = {
  socketPath: '/run/x/vfs.sock',
  sourceDir: '/run/x/shared',
  threadPoolSize: 1,
  xattr: false,
  announceSubmounts: false,
  dropCaps: [] as string[],
  extraArgs: [] as string[],
};

t.test('the real C daemon is detected as C 7.2 from its help and version', async (t) => {
  const h = await run(C_VIRTIOFSD, ['--help'], { reject: false });
  const v = await run(C_VIRTIOFSD, ['--version'], { reject: false });
  const f = flavorFromText(h.stdout + h.stderr, v.stdout + v.stderr);
  t.equal(f?.kind, 'c');
  t.match(f?.version, /^7\.2/);
  t.same(f?.cacheModes, ['auto', 'always', 'never'], 'no metadata mode in the C daemon');
  t.same(f?.sandboxModes, ['namespace', 'chroot']);
});

t.test('Rust help text is detected as Rust with metadata and sandbox none', async (t) => {
  const f = flavorFromText(RUST_HELP, 'virtiofsd 1.10.1\n');
  t.same(f, {
    kind: 'rust',
    version: '1.10.1',
    cacheModes: ['auto', 'always', 'never', 'metadata'],
    sandboxModes: ['namespace', 'chroot', 'none'],
  });
  t.equal(flavorFromText('usage: true [ignored]', 'true (GNU coreutils) 9.1'), undefined, 'not a virtiofsd');
});

const C: Flavor = { kind: 'c', version: '7.2.22', cacheModes: ['auto', 'always', 'never'], sandboxModes: ['namespace', 'chroot'] };
const RUST = flavorFromText(RUST_HELP, 'virtiofsd 1.10.1')!;

t.test('C spelling: -o options, = forms, never becomes none', async (t) => {
  t.same(
    virtiofsdArgs(C, {
      ...base,
      cache: 'never',
      sandbox: 'chroot',
      xattr: true,
      announceSubmounts: true,
      extraArgs: ['-o', 'log_level=warn'],
    }),
    [
      '--socket-path=/run/x/vfs.sock',
      '-o',
      'source=/run/x/shared',
      '-o',
      'cache=none',
      '-o',
      'sandbox=chroot',
      '--thread-pool-size=1',
      '-o',
      'xattr',
      '-o',
      'announce_submounts',
      '-o',
      'log_level=warn',
    ],
  );
  t.same(virtiofsdArgs(C, { ...base, cache: 'auto', sandbox: 'namespace', threadPoolSize: undefined }), [
    '--socket-path=/run/x/vfs.sock',
    '-o',
    'source=/run/x/shared',
    '-o',
    'cache=auto',
    '-o',
    'sandbox=namespace',
  ]);
  t.same(daemonPidFiles(C, '/run/x/vfs.sock'), ['/run/virtiofsd/.run.x.vfs.sock.pid']);
});

t.test("Rust spelling: separate values, --shared-dir, never stays never (and C's none is accepted as never)", async (t) => {
  const cache = resolveVirtiofsConfig({ cache: 'none' }).cache;
  t.equal(cache, 'never');
  t.same(
    virtiofsdArgs(RUST, {
      ...base,
      cache,
      sandbox: 'none',
      xattr: true,
      announceSubmounts: true,
      extraArgs: ['--inode-file-handles=prefer'],
    }),
    [
      '--socket-path',
      '/run/x/vfs.sock',
      '--shared-dir',
      '/run/x/shared',
      '--cache',
      'never',
      '--sandbox',
      'none',
      '--thread-pool-size',
      '1',
      '--xattr',
      '--announce-submounts',
      '--inode-file-handles=prefer',
    ],
  );
  t.same(virtiofsdArgs(RUST, { ...base, cache: 'metadata', sandbox: 'namespace' }).slice(4, 6), ['--cache', 'metadata']);
  t.same(daemonPidFiles(RUST, '/run/x/vfs.sock'), ['/run/x/vfs.sock.pid']);
});

t.test('by default both daemons drop mknod and setfcap: -o modcaps= (C) and --modcaps= (Rust)', async (t) => {
  const d = resolveVirtiofsConfig();
  t.same(d.dropCaps, ['mknod', 'setfcap'], 'the default');
  t.equal(d.rwShareReachable, 'refuse', 'read-write shares other users can reach are refused by default');
  const c = virtiofsdArgs(C, { ...base, cache: 'auto', sandbox: 'namespace', dropCaps: d.dropCaps });
  t.same(c.slice(5, 9), ['-o', 'sandbox=namespace', '-o', 'modcaps=-mknod:-setfcap'], 'C: right after the sandbox mode');
  const r = virtiofsdArgs(RUST, { ...base, cache: 'auto', sandbox: 'namespace', dropCaps: d.dropCaps });
  t.ok(r.includes('--modcaps=-mknod:-setfcap'), `Rust: ${r.join(' ')}`);
  t.notOk(
    virtiofsdArgs(C, { ...base, cache: 'auto', sandbox: 'namespace' }).some((a) => a.includes('modcaps')),
    'empty keeps all',
  );
  t.throws(() => resolveVirtiofsConfig({ dropCaps: ['CAP_MKNOD'] }), { code: 'E_CONFIG', message: /virtiofs\.dropCaps/ });
  t.throws(() => resolveVirtiofsConfig({ rwShareReachable: 'maybe' }), { code: 'E_CONFIG', message: /virtiofs\.rwShareReachable/ });
});

t.test('a mode the binary lacks is a config error naming the key and the daemon', async (t) => {
  t.throws(() => virtiofsdArgs(C, { ...base, cache: 'metadata', sandbox: 'namespace' }), {
    code: 'E_CONFIG',
    message: /virtiofs\.cache = metadata .*C virtiofsd 7\.2\.22.*auto, always, never\/none/,
  });
  t.throws(() => virtiofsdArgs(C, { ...base, cache: 'auto', sandbox: 'none' }), { code: 'E_CONFIG', message: /virtiofs\.sandbox = none/ });
});

t.test('config validation names the bad key', async (t) => {
  const d = resolveVirtiofsConfig();
  t.equal(d.daemonPath, '/usr/lib/qemu/virtiofsd');
  t.equal(d.cache, 'auto');
  t.equal(d.root, '/run/kata-resources');
  t.equal(d.queueSize, 1024);
  t.equal(d.tag, 'kataShared');
  t.same(d.restart, { maxRestarts: 0, windowMs: 60_000 }, 'restart off by default');
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ cache: 'sometimes' }, /virtiofs\.cache = "sometimes".*auto, always, never, none, metadata/],
    [{ sandbox: 'jail' }, /virtiofs\.sandbox/],
    [{ queueSize: 1000 }, /virtiofs\.queueSize/],
    [{ queueSize: 2048 }, /virtiofs\.queueSize/],
    [{ threadPoolSize: -1 }, /virtiofs\.threadPoolSize/],
    [{ daemonPath: 'virtiofsd' }, /virtiofs\.daemonPath.*absolute/],
    [{ root: 'relative/dir' }, /virtiofs\.root/],
    [{ extraArgs: '--xattr' }, /virtiofs\.extraArgs/],
    [{ restart: { maxRestarts: 'many' } }, /virtiofs\.restart\.maxRestarts/],
    [{ cahce: 'auto' }, /virtiofs\.cahce is not a known key/],
  ];
  for (const [c, msg] of cases) t.throws(() => resolveVirtiofsConfig(c as never), { code: 'E_CONFIG', message: msg }, JSON.stringify(c));
});

t.test('/proc/net/unix parsing: listening flag and paths with spaces', async (t) => {
  const text = [
    'Num       RefCount Protocol Flags    Type St Inode Path',
    '0000000000000000: 00000002 00000000 00010000 0001 01 24121 /run/x/vfs.sock',
    '0000000000000000: 00000003 00000000 00000000 0001 03 24122 /run/x/other.sock',
    '0000000000000000: 00000002 00000000 00010000 0001 01 24123 /run/x/with space.sock',
    '0000000000000000: 00000002 00000000 00000000 0002 01 24124',
  ].join('\n');
  const e = parseProcNetUnix(text);
  t.equal(e.length, 3);
  t.ok(isListening('/run/x/vfs.sock', e));
  t.notOk(isListening('/run/x/other.sock', e), 'connected, not listening');
  t.ok(isListening('/run/x/with space.sock', e));
  t.notOk(isListening('/run/x/vfs.sock', e, new Set([24121])), 'an excluded (old) listener does not count');
});

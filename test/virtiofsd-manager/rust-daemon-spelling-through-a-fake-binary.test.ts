import { existsSync, readFileSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import t from 'tap';
import { clearFlavorCache, detectFlavor } from '../../virtiofsd-manager/flavor.js';
import { resolveVirtiofsConfig } from '../../virtiofsd-manager/config.js';
import { isListening } from '../../virtiofsd-manager/readiness.js';
import { VirtiofsDaemon } from '../../virtiofsd-manager/virtiofsd.js';
import { memLogger, RUST_HELP, tempRoot } from './helpers.js';

/**
 * No Rust virtiofsd is packaged for Debian 12: a shell script answers --help/--version like it,
 * records its argv, and listens on the --socket-path it was given (socat), so the whole start path
 * (detection, spelling, readiness, mode, stop) runs against the Rust spelling.
 */
function fakeRust(dir: string): string {
  const path = `${dir}/virtiofsd-rust`;
  writeFileSync(`${dir}/help.txt`, RUST_HELP);
  writeFileSync(
    path,
    [
      '#!/bin/sh',
      'case "$1" in',
      `  --help) echo help >> "$0.calls"; cat "${dir}/help.txt"; exit 0;;`,
      '  --version) echo "virtiofsd 1.10.1"; exit 0;;',
      'esac',
      'printf "%s\\n" "$@" > "$0.args"',
      'sock=""; prev=""',
      'for a in "$@"; do [ "$prev" = "--socket-path" ] && sock="$a"; prev="$a"; done',
      'echo "[INFO virtiofsd] Waiting for vhost-user socket connection..." >&2',
      'exec socat UNIX-LISTEN:"$sock" /dev/null',
    ].join('\n'),
    { mode: 0o755 },
  );
  return path;
}

t.test('the same config drives the Rust daemon in its own spelling', async (t) => {
  const root = tempRoot(t);
  const bin = fakeRust(root);
  clearFlavorCache();
  const f = await detectFlavor(bin);
  t.equal(f.kind, 'rust');
  mkdirSync(`${root}/src`);
  const cfg = resolveVirtiofsConfig({
    daemonPath: bin,
    cache: 'none',
    sandbox: 'none',
    threadPoolSize: 2,
    xattr: true,
    extraArgs: ['--inode-file-handles=prefer'],
  });
  const { log, lines } = memLogger();
  const v = await VirtiofsDaemon.start({ ...cfg, sourceDir: `${root}/src`, socketPath: `${root}/run/vfs.sock`, log });
  t.teardown(() => v.stop(0));
  t.ok(isListening(`${root}/run/vfs.sock`));
  t.equal(statSync(`${root}/run/vfs.sock`).mode & 0o777, 0o600);
  t.same(
    readFileSync(`${bin}.args`, 'utf8').trim().split('\n'),
    [
      '--socket-path',
      `${root}/run/vfs.sock`,
      '--shared-dir',
      `${root}/src`,
      '--cache',
      'never',
      '--sandbox',
      'none',
      '--modcaps=-mknod:-setfcap',
      '--thread-pool-size',
      '2',
      '--xattr',
      '--inode-file-handles=prefer',
    ],
    'argv as the Rust daemon spells it',
  );
  t.ok(
    lines.some((l) => l.msg === '[INFO virtiofsd] Waiting for vhost-user socket connection...' && l.daemonPid === v.pid),
    'stderr logged with the pid',
  );
  t.same(v.state().pidFiles, [`${root}/run/vfs.sock.pid`]);
  await v.stop();
  t.notOk(existsSync(`${root}/run/vfs.sock`));
});

t.test('metadata cache is passed through to a Rust daemon that lists it', async (t) => {
  const root = tempRoot(t);
  const bin = fakeRust(root);
  clearFlavorCache();
  mkdirSync(`${root}/src`);
  const cfg = resolveVirtiofsConfig({ daemonPath: bin, cache: 'metadata' });
  const v = await VirtiofsDaemon.start({ ...cfg, sourceDir: `${root}/src`, socketPath: `${root}/run/vfs.sock`, log: memLogger().log });
  t.teardown(() => v.stop(0));
  t.same(v.args.slice(4, 8), ['--cache', 'metadata', '--sandbox', 'namespace']);
  await v.stop();
});

t.test('detection is cached per binary and redone when the binary changes', async (t) => {
  const root = tempRoot(t);
  const bin = fakeRust(root);
  clearFlavorCache();
  const [a, b] = await Promise.all([detectFlavor(bin), detectFlavor(bin)]);
  const c = await detectFlavor(bin);
  t.same([a.kind, b.kind, c.kind], ['rust', 'rust', 'rust']);
  t.equal(readFileSync(`${bin}.calls`, 'utf8'), 'help\n', '--help ran once for three detections');
  writeFileSync(bin, '#!/bin/sh\necho "usage: virtiofsd"; echo "    -o source=PATH"; echo "virtiofsd version 7.2.1"\n', { mode: 0o755 });
  t.equal((await detectFlavor(bin)).kind, 'c', 're-detected after the binary was replaced');
});

import t from 'tap';
import { translateExtraArgs } from '../../virtiofsd-manager/extra-args.js';
import type { Flavor } from '../../virtiofsd-manager/flavor.js';

const C: Flavor = { kind: 'c', version: '7.2.22', cacheModes: ['auto', 'always', 'never'], sandboxModes: ['namespace', 'chroot'] };
const RUST: Flavor = {
  kind: 'rust',
  version: '1.10.1',
  cacheModes: ['auto', 'always', 'never', 'metadata'],
  sandboxModes: ['namespace', 'chroot', 'none'],
};

t.test("Kata's default extra args become the C daemon's spelling, each with a note", async (t) => {
  const r = translateExtraArgs(C, ['--thread-pool-size=1', '--announce-submounts']);
  t.same(r.args, ['--thread-pool-size=1', '-o', 'announce_submounts']);
  t.equal(r.notes.length, 1, 'only the respelled one is noted');
  t.match(r.notes[0], /--announce-submounts .* -o announce_submounts/);
});

t.test('values as separate words, log levels, runtime-owned and Rust-only options', async (t) => {
  const r = translateExtraArgs(C, ['--log-level', 'trace', '--cache', 'always', '--inode-file-handles=prefer', '-o', 'no_posix_lock']);
  t.same(r.args, ['-o', 'log_level=debug', '-o', 'no_posix_lock'], 'C options pass as they are');
  t.match(r.notes.join('\n'), /--cache=always dropped: set hypervisor\.qemu\.virtio_fs_cache/);
  t.match(r.notes.join('\n'), /--inode-file-handles=prefer dropped: the C virtiofsd 7\.2\.22 has no such option/);
});

t.test('the Rust daemon gets the arguments verbatim', async (t) => {
  const extra = ['--thread-pool-size=1', '--announce-submounts', '--inode-file-handles=prefer'];
  t.same(translateExtraArgs(RUST, extra), { args: extra, notes: [] });
});

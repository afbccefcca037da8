/**
 * Strings a guest makes reach the operator's terminal only escaped (red-team D18): a tmpfs the
 * guest mounts with escape sequences, a bell, a carriage return, a newline and a bidi override in
 * its source name shows in `sandbox status` as visible escapes, while `--json` keeps the raw
 * string (JSON-escaped). Error messages naming such a string are escaped on stderr too.
 */
import t from 'tap';
import { printable } from '../../../runtime-core/cli/print.js';
import { guestKitOrSkip } from '../../helpers/runtime-core.js';
import { cli, parseJson, tempRuntime, type CliResult } from '../../helpers/sandbox.js';

const { skip } = await guestKitOrSkip();
// ESC ] 0 ; title BEL, clear screen, red, CR, a forged line, and a right-to-left override.
const EVIL = 'evil\u001b]0;PWNED-TITLE\u0007\u001b[2J\u001b[31mRED\rX\nsandbox forged: running\u202egnp.exe';
/** Whether a raw control character (C0 but tab and newline, DEL, C1, a bidi override) is in s. */
const rawControl = (s: string): boolean =>
  [...s].some((ch) => {
    const c = ch.codePointAt(0)!;
    return (
      (c < 0x20 && c !== 0x09 && c !== 0x0a) || (c >= 0x7f && c <= 0x9f) || (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069)
    );
  });

t.test('printable: every control character becomes a visible escape; text, tabs and (kept) newlines stay', async (t) => {
  t.equal(printable('plain text, ümlaut, 日本'), 'plain text, ümlaut, 日本', 'nothing to escape: the same string');
  t.equal(printable('a\tb\nc'), 'a\tb\nc', 'tab and newline kept by default');
  t.equal(printable('a\nb', false), 'a\\x0ab', 'a newline escaped in one-line mode');
  t.equal(printable('\u001b[2J\u0007\r\u0000\u007f\u009b'), '\\x1b[2J\\x07\\x0d\\x00\\x7f\\x9b', 'C0, DEL and C1 (CSI)');
  t.equal(printable('x\u202ey\u2066z\u200f'), 'x\\u{202e}y\\u{2066}z\\u{200f}', 'bidirectional controls');
  t.notOk(rawControl(printable(EVIL, false)), 'nothing raw is left');
  t.notOk(printable(EVIL, false).includes('\n'), 'one line');
});

t.test('error messages on stderr are escaped too', async (t) => {
  const rt = tempRuntime(t);
  const r = await cli(['iface', 'add', 'krt-none', '/nonexistent/x\u001b]0;T\u0007.json', '--config', rt.config]);
  t.equal(r.code, 1);
  t.match(r.stderr, 'cannot read /nonexistent/x\\x1b]0;T\\x07.json: ENOENT');
  t.notOk(rawControl(r.stderr), 'no raw ESC or BEL');
});

t.test('a guest-made mount source: escaped in status text, raw in --json', { skip }, async (t) => {
  const rt = tempRuntime(t);
  const id = `krt-esc-${process.pid}`;
  const c = ['--config', rt.config];
  const up = await cli(['sandbox', 'up', '--id', id, ...c, '--json']);
  t.equal(up.code, 0, `up: ${up.stderr.slice(-400)}`);
  t.teardown(() => cli(['sandbox', 'down', id, ...c]));
  const m: CliResult = await cli(['exec', id, ...c, '--', 'sh', '-c', 'mkdir -p /tmp/m1 && mount -t tmpfs "$0" /tmp/m1', EVIL]);
  t.equal(m.code, 0, `the guest mounts it: ${m.stderr}`);

  const text = await cli(['sandbox', 'status', id, ...c]);
  t.equal(text.code, 0);
  t.notOk(rawControl(text.stdout), 'no raw control character in the text output');
  const line = text.stdout.split('\n').find((l) => l.includes('/tmp/m1'));
  t.equal(
    line,
    '  guest mount: evil\\x1b]0;PWNED-TITLE\\x07\\x1b[2J\\x1b[31mRED\\x0dX\\x0asandbox forged: running\\u{202e}gnp.exe on /tmp/m1 (tmpfs)',
    'one line, every control visible',
  );
  t.notOk(
    text.stdout.split('\n').some((l) => l.startsWith('sandbox forged')),
    'no forged line',
  );

  const json = parseJson<{ guest: { mounts: { source: string; mount_point: string }[] } }>(
    await cli(['sandbox', 'status', id, ...c, '--json']),
  );
  t.equal(json.guest.mounts.find((x) => x.mount_point === '/tmp/m1')?.source, EVIL, '--json keeps the raw string');
});

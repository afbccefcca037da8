/**
 * `kata-resources guest-kit [--quiet] [--cache-dir DIR] [--hash-only]`: build (once) or find the
 * guest kit and print it as one JSON object on stdout. Progress goes to stderr unless --quiet.
 * Returns the exit status (errors are printed with their code).
 */
import { ensureGuestKit, guestKitInputsHash } from './index.js';

const GUEST_KIT_USAGE = 'usage: guest-kit [--quiet] [--cache-dir DIR] [--hash-only]';

export async function guestKitCommand(
  argv: readonly string[],
  out: NodeJS.WritableStream = process.stdout,
  err: NodeJS.WritableStream = process.stderr,
): Promise<number> {
  const known = new Set(['--quiet', '--cache-dir', '--hash-only', '--help', '-h']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!known.has(a)) {
      err.write(`guest-kit: unknown argument ${a}\n${GUEST_KIT_USAGE}\n`);
      return 2;
    }
    if (a === '--cache-dir') i++;
  }
  if (argv.includes('--help') || argv.includes('-h')) {
    out.write(`${GUEST_KIT_USAGE}\n`);
    return 0;
  }
  const quiet = argv.includes('--quiet');
  const i = argv.indexOf('--cache-dir');
  const cacheDir = i >= 0 ? argv[i + 1] : undefined;
  if (i >= 0 && !cacheDir) {
    err.write(`guest-kit: --cache-dir needs a directory\n${GUEST_KIT_USAGE}\n`);
    return 2;
  }
  try {
    if (argv.includes('--hash-only')) {
      out.write(`${JSON.stringify({ hash: await guestKitInputsHash() })}\n`);
      return 0;
    }
    const started = Date.now();
    const kit = await ensureGuestKit({ cacheDir, onProgress: quiet ? undefined : (m) => err.write(`guest-kit: ${m}\n`) });
    if (!quiet) err.write(`guest-kit: ${kit.outcome} ${kit.dir} (${Date.now() - started} ms)\n`);
    out.write(`${JSON.stringify(kit, null, 2)}\n`);
    return 0;
  } catch (e) {
    const x = e as { code?: string; message?: string };
    err.write(`guest-kit: ${x.code ? `${x.code}: ` : ''}${x.message ?? String(e)}\n`);
    return 1;
  }
}

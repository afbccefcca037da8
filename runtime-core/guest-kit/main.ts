/**
 * Build (once) or find the guest kit and print its paths as one JSON object on stdout.
 *
 *   node dist/runtime-core/guest-kit/main.js [--quiet] [--cache-dir DIR] [--hash-only]
 *
 * Progress goes to stderr unless --quiet. Exit status 1 with the error on stderr on failure.
 */
import { ensureGuestKit, guestKitInputsHash } from './index.js';

async function main(argv: string[]): Promise<number> {
  const quiet = argv.includes('--quiet');
  const i = argv.indexOf('--cache-dir');
  const cacheDir = i >= 0 ? argv[i + 1] : undefined;
  if (argv.includes('--hash-only')) {
    process.stdout.write(JSON.stringify({ hash: await guestKitInputsHash() }) + '\n');
    return 0;
  }
  const started = Date.now();
  const kit = await ensureGuestKit({
    cacheDir,
    onProgress: quiet ? undefined : (m) => process.stderr.write(`guest-kit: ${m}\n`),
  });
  if (!quiet) process.stderr.write(`guest-kit: ${kit.dir} (${Date.now() - started} ms)\n`);
  process.stdout.write(JSON.stringify(kit, null, 2) + '\n');
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e: unknown) => {
    const err = e as { code?: string; message?: string };
    process.stderr.write(`guest-kit: ${err.code ? `${err.code}: ` : ''}${err.message ?? String(e)}\n`);
    process.exitCode = 1;
  },
);

import { fstatSync, readFileSync, writeSync } from 'node:fs';
import { runCni } from './run.js';
import { mark, startTiming } from './timing.js';

/**
 * The kata-cni executable (bundled into dist/cni/kata-cni.js by cni/build/bundle.mjs). Reads the
 * configuration from stdin, prints the result or the error JSON on stdout, exits 0 or 1. Nothing
 * else ever goes to stdout.
 */
/**
 * stdin is a terminal: a character device other than /dev/null (1:3). Checked with fstat rather
 * than node:tty, whose loading (tty, net, stream) costs several ms at every start.
 */
function stdinIsTerminal(): boolean {
  try {
    const st = fstatSync(0);
    return st.isCharacterDevice() && st.rdev !== 0x103;
  } catch {
    return false;
  }
}

async function readStdin(): Promise<string> {
  if (stdinIsTerminal()) return '';
  try {
    return readFileSync(0, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EAGAIN') {
      const chunks: Buffer[] = [];
      for await (const c of process.stdin) chunks.push(c as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    }
    if (code === 'EOF' || code === 'EBADF' || code === 'ENXIO' || code === 'EISDIR') return '';
    throw e;
  }
}

function writeAll(fd: number, text: string): void {
  const buf = Buffer.from(text, 'utf8');
  let off = 0;
  try {
    while (off < buf.length) off += writeSync(fd, buf, off);
  } catch {
    // The caller went away (EPIPE): nothing more to do.
  }
}

// No top-level await: the bundle is a classic script (see cni/build/bundle.mjs).
startTiming(process.env);
mark('code-loaded');
void readStdin()
  .then((stdin) => {
    mark('stdin-read');
    return runCni(process.env, stdin);
  })
  .then(
    (out) => {
      if (out.stdout) writeAll(1, out.stdout);
      if (out.stderr) writeAll(2, out.stderr);
      mark('result-written');
      process.exit(out.exitCode);
    },
    (e: unknown) => {
      writeAll(2, `kata-cni: ${(e as Error)?.stack ?? String(e)}\n`);
      process.exit(1);
    },
  );

import { readFile } from 'node:fs/promises';
import { KataError } from '../../host/errors.js';

/** Most a JSON input (a file or stdin) may hold. */
const MAX_INPUT_BYTES = 4 * 1024 * 1024;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of process.stdin) {
    const b = c as Buffer;
    n += b.length;
    if (n > MAX_INPUT_BYTES) throw new KataError('E_INVALID_ARGUMENT', `stdin holds more than ${MAX_INPUT_BYTES} bytes of JSON`);
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** JSON from a file, or from stdin for "-"; typed errors for a missing file and for bad JSON. */
export async function readJsonInput(src: string): Promise<unknown> {
  let text: string;
  if (src === '-') text = await readStdin();
  else {
    try {
      text = await readFile(src, 'utf8');
    } catch (e) {
      throw new KataError('E_INVALID_ARGUMENT', `cannot read ${src}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, {
        path: src,
      });
    }
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new KataError('E_INVALID_ARGUMENT', `${src === '-' ? 'stdin' : src}: not JSON (${(e as Error).message})`);
  }
}

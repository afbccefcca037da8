import t from 'tap';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../host/exec.js';
import { openStdio } from '../../shim/fifo-io.js';

/**
 * Read a FIFO to EOF in another process (containerd's side); resolves with the bytes' sha256 and
 * count. Given up after 20 s (its open blocks for good when the writer already went).
 */
function readFifo(path: string): Promise<{ sha: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const c = spawn('cat', [path], { stdio: ['ignore', 'pipe', 'ignore'] });
    const limit = setTimeout(() => c.kill('SIGKILL'), 20_000);
    c.on('exit', () => clearTimeout(limit));
    const h = createHash('sha256');
    let bytes = 0;
    c.stdout.on('data', (d: Buffer) => {
      h.update(d);
      bytes += d.length;
    });
    c.on('error', reject);
    c.on('close', () => resolve({ sha: h.digest('hex'), bytes }));
  });
}

t.test('output queued in the FIFO writer when the process ends reaches a reader that comes late', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'krt-fifo-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'stdout');
  await run('mkfifo', [out]);
  const io = openStdio({ stdin: '', stdout: out, stderr: '', terminal: false });
  // Far more than a pipe holds (64 KiB): most of it waits in the writer's queue, as under load when
  // containerd reads slower than the guest writes.
  const data = randomBytes(1024 * 1024);
  io.stdout!.write(data);
  const flushed = io.flush(10_000);
  await new Promise((r) => setTimeout(r, 300));
  const got = await readFifo(out);
  await flushed;
  t.equal(got.bytes, data.length, 'every byte arrived');
  t.equal(got.sha, createHash('sha256').update(data).digest('hex'), 'byte-exact');
});

t.test('a FIFO nobody reads does not hold the exit: flush gives up after its bound', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'krt-fifo-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'stdout');
  await run('mkfifo', [out]);
  const io = openStdio({ stdin: '', stdout: out, stderr: '', terminal: false });
  io.stdout!.write(randomBytes(256 * 1024));
  await io.flush(500); // without the bound this never returns and the test times out
  t.ok((io.stdout as unknown as { destroyed: boolean }).destroyed, 'the writer was closed');
});

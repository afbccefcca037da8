import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { pino } from 'pino';
import type { Logger } from '../../host/log.js';
import { mountsUnder, unmountAllUnder } from '../../host/mounts.js';
import type { PluginContext } from '../../host/plugin.js';

interface Teardownable {
  teardown(fn: () => unknown): void;
}

export const C_VIRTIOFSD = '/usr/lib/qemu/virtiofsd';

/** A fresh directory /tmp/krt-vfs-XXXX, unmounted and removed when the test ends. */
export function tempRoot(t: Teardownable, tag = 'vfs'): string {
  const dir = mkdtempSync(`/tmp/krt-${tag}-`);
  t.teardown(async () => {
    await unmountAllUnder(dir);
    if (mountsUnder(dir).length === 0) rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** A logger that keeps every record (for checking what was logged). */
export function memLogger(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const log = pino(
    { level: process.env.KATA_LOG_LEVEL ?? 'debug' },
    {
      write: (s: string) => {
        lines.push(JSON.parse(s) as Record<string, unknown>);
      },
    },
  );
  return { log, lines };
}

export function pluginCtx(sandboxId: string, runDir: string, log: Logger, faults?: PluginContext['faults']): PluginContext {
  return {
    sandboxId,
    netns: undefined,
    log,
    netlink: undefined as never,
    sysfs: undefined as never,
    runDir,
    ...(faults ? { faults } : {}),
  };
}

/** Pids of virtiofsd processes whose command line mentions `needle`. */
export function virtiofsdPidsMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (cmd.some((a) => a.includes('virtiofsd')) && cmd.some((a) => a.includes(needle))) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

/**
 * Speak a little vhost-user: send GET_FEATURES (request 1, version 1) and read the reply's 64-bit
 * feature mask. Closing the connection afterwards makes the C daemon exit (it is one-shot).
 */
export function vhostUserGetFeatures(socketPath: string, timeoutMs = 5000): Promise<bigint> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('no vhost-user reply'));
    }, timeoutMs);
    let buf = Buffer.alloc(0);
    sock.on('connect', () => {
      const hdr = Buffer.alloc(12);
      hdr.writeUInt32LE(1, 0); // VHOST_USER_GET_FEATURES
      hdr.writeUInt32LE(0x1, 4); // version 1
      hdr.writeUInt32LE(0, 8); // no payload
      sock.write(hdr);
    });
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 20) {
        clearTimeout(timer);
        const req = buf.readUInt32LE(0);
        const flags = buf.readUInt32LE(4);
        const size = buf.readUInt32LE(8);
        sock.end();
        if (req !== 1 || (flags & 0x4) === 0 || size !== 8) reject(new Error(`unexpected reply req=${req} flags=${flags} size=${size}`));
        else resolve(buf.readBigUInt64LE(12));
      }
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

export async function waitFor(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** What the Rust virtiofsd (1.10) prints for --help, abridged to the lines detection looks at. */
export const RUST_HELP = `virtiofsd backend

Usage: virtiofsd [OPTIONS]

Options:
      --shared-dir <SHARED_DIR>        Shared directory path
      --tag <TAG>                      The tag that the virtio device advertises
      --socket-path <SOCKET_PATH>      vhost-user socket path
      --fd <FD>                        File descriptor for the listening socket
      --thread-pool-size <THREAD_POOL_SIZE>  Maximum thread pool size. A value of "0" disables the pool [default: 0]
      --xattr                          Enable support for extended attributes
      --announce-submounts             Tell the guest which directories are mount points
      --cache <CACHE>                  The caching policy the file system should use (auto, always, metadata, never) [default: auto]
      --sandbox <SANDBOX>              Sandbox mechanism to isolate the daemon process (namespace, chroot, none) [default: namespace]
  -V, --version                        Print version
`;

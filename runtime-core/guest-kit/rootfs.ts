/**
 * The guest's rootfs image, built like Kata's osbuilder builds its image but much smaller: a
 * staging directory with kata-init (PID 1, guest/init/kata-init.c: what runc needs mounted, then the
 * agent), node, the agent bundle, iproute2's ip, runc (containers), kata-monitor, busybox and their
 * shared libraries, turned into an ext4 image by `mkfs.ext4 -d` (no mount, no loop device).
 */
import { copyFile, chmod, mkdir, open, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { KataError } from '../../host/errors.js';
import { run } from '../../host/exec.js';
import type { AgentFiles } from './agent-bundle.js';
import { MiB, daxImageHeaders, daxImageLayout } from './dax-image.js';
import { ROOTFS_INIT } from './initramfs.js';
import { AGENT_START_PATH, GUEST_NODE } from './init.js';

/** In-guest path of the agent bundle; its start, its code cache and kata-monitor sit beside it (they look there). */
const AGENT_PATH = '/opt/kata-agent/agent.cjs';
const MONITOR_PATH = '/opt/kata-agent/kata-monitor';

/** Busybox applets never linked into the rootfs: the real tools win. */
const APPLET_EXCLUDE = new Set(['ip', 'ipaddr', 'iplink', 'iproute', 'iprule', 'ipneigh', 'iptunnel', 'init', 'linuxrc', 'node']);

/** Shared libraries of an ELF binary as ldd reports them: [path printed by ldd, real file]. */
export function parseLdd(out: string): string[] {
  const paths: string[] = [];
  for (const line of out.split('\n')) {
    const arrow = /=>\s*(\/\S+)\s+\(/.exec(line);
    if (arrow) {
      paths.push(arrow[1]!);
      continue;
    }
    const interp = /^\s*(\/\S+)\s+\(0x/.exec(line);
    if (interp) paths.push(interp[1]!);
    if (/=>\s*not found/.test(line)) throw new KataError('E_EXEC', `ldd: a library is missing: ${line.trim()}`);
  }
  return [...new Set(paths)];
}

async function copyWithLibs(stage: string, bin: string, dest: string, libs: Set<string>): Promise<void> {
  await mkdir(join(stage, dirname(dest)), { recursive: true });
  await copyFile(bin, join(stage, dest));
  await chmod(join(stage, dest), 0o755);
  const r = await run('ldd', [bin], { reject: false });
  if (r.exitCode !== 0 && !/not a dynamic executable/.test(r.stdout + r.stderr))
    throw new KataError('E_EXEC', `ldd ${bin}: ${r.stderr.trim()}`);
  for (const l of parseLdd(r.stdout)) libs.add(l);
}

export interface RootfsInputs {
  node: string;
  ip: string;
  busybox: string;
  runc: string;
  /** The built kata-monitor binary (static). */
  monitor: string;
  /** The built kata-init binary (static), the guest's PID 1. */
  init: string;
  /** The agent and its start, each one CommonJS file. */
  agent: AgentFiles;
  /** The agent's V8 code cache (agent-bundle.ts), when there is one. */
  agentCodeCache?: Buffer;
}

/** Lay out the rootfs tree in `stage`. */
export async function stageRootfs(stage: string, inp: RootfsInputs): Promise<void> {
  for (const d of [
    'bin',
    'sbin',
    'usr/bin',
    'usr/sbin',
    'lib',
    'lib64',
    'etc',
    'dev',
    'proc',
    'sys',
    'run',
    'tmp',
    'mnt',
    'root',
    'var',
    'opt/kata-agent',
  ]) {
    await mkdir(join(stage, d), { recursive: true });
  }
  await chmod(join(stage, 'tmp'), 0o1777);
  await chmod(join(stage, 'root'), 0o700);
  await symlink('/tmp', join(stage, 'var', 'tmp'));
  await symlink('/run', join(stage, 'var', 'run'));

  const libs = new Set<string>();
  await copyWithLibs(stage, inp.node, GUEST_NODE.slice(1), libs);
  // The host's node carries debug info; the guest does not need it (about 12 MB less).
  await run('strip', ['--strip-all', join(stage, GUEST_NODE)], { reject: false }).catch(() => undefined); // binutils is optional
  await copyWithLibs(stage, inp.ip, 'usr/sbin/ip', libs);
  await copyWithLibs(stage, inp.runc, 'usr/sbin/runc', libs); // libseccomp comes with it
  for (const lib of libs) {
    await mkdir(join(stage, dirname(lib)), { recursive: true });
    await copyFile(lib, join(stage, lib)); // copyFile follows symlinks: the real library lands at the soname path
  }

  await copyFile(inp.busybox, join(stage, 'bin/busybox'));
  await chmod(join(stage, 'bin/busybox'), 0o755);
  const list = (await run(inp.busybox, ['--list-full'])).stdout
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  for (const full of list) {
    const name = full.split('/').pop()!;
    if (APPLET_EXCLUDE.has(name) || full.includes('..')) continue;
    const dest = join(stage, full);
    if (
      await stat(dest).then(
        () => true,
        () => false,
      )
    )
      continue;
    await mkdir(dirname(dest), { recursive: true });
    await symlink('/bin/busybox', dest).catch(() => {});
  }

  await writeFile(join(stage, AGENT_PATH), inp.agent.agent, { mode: 0o644 });
  await writeFile(join(stage, AGENT_START_PATH), inp.agent.start, { mode: 0o644 });
  if (inp.agentCodeCache) await writeFile(join(stage, `${AGENT_PATH}.cache`), inp.agentCodeCache, { mode: 0o644 });
  await copyFile(inp.monitor, join(stage, MONITOR_PATH));
  await chmod(join(stage, MONITOR_PATH), 0o755);
  await copyFile(inp.init, join(stage, ROOTFS_INIT));
  await chmod(join(stage, ROOTFS_INIT), 0o755);
  await writeFile(join(stage, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
  await writeFile(join(stage, 'etc/group'), 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n');
  await writeFile(join(stage, 'etc/hostname'), 'kata-guest\n');
  await writeFile(join(stage, 'etc/hosts'), '127.0.0.1 localhost kata-guest\n::1 localhost ip6-localhost\n');
  await writeFile(join(stage, 'etc/nsswitch.conf'), 'passwd: files\ngroup: files\nhosts: files dns\n');
  await symlink('/proc/self/mounts', join(stage, 'etc/mtab'));
  await symlink('/run/resolv.conf', join(stage, 'etc/resolv.conf'));
}

async function treeBytes(dir: string): Promise<{ bytes: number; inodes: number }> {
  const { readdir, lstat } = await import('node:fs/promises');
  let bytes = 0;
  let inodes = 0;
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      inodes++;
      const p = join(d, e.name);
      if (e.isDirectory()) {
        bytes += 4096;
        await walk(p);
      } else {
        bytes += Math.ceil((await lstat(p)).size / 4096) * 4096;
      }
    }
  };
  await walk(dir);
  return { bytes, inodes };
}

/**
 * /dev/console on the root file system: the kernel opens it as PID 1's stdin, stdout and stderr
 * before init runs, and when the kernel mounts the root itself no devtmpfs is there yet. Written by
 * debugfs into the file system (`mkfs.ext4 -d` copies a device node only from a stage that has one,
 * and mknod in the stage needs root).
 */
async function addConsoleNode(fs: string): Promise<void> {
  await run('debugfs', ['-w', '-f', '-', fs], { input: 'cd /dev\nmknod console c 5 1\nsif console mode 020600\n', timeoutMs: 60_000 });
  const st = await run('debugfs', ['-R', 'stat /dev/console', fs], { timeoutMs: 60_000 });
  if (!/Type: character special/.test(st.stdout) || !/Device major\/minor number: 05:01/.test(st.stdout))
    throw new KataError('E_EXEC', `debugfs did not make /dev/console in the guest image: ${st.stdout.slice(0, 300)} ${st.stderr.trim()}`);
}

/**
 * The guest image of `stage` without mounting anything or a loop device: osbuilder's NVDIMM layout
 * (dax-image.ts) with an ext4 file system that `mkfs.ext4 -d` writes straight into the partition
 * (`-E offset`), then the MBRs and the PFN info block in front of it. No journal (the image is only
 * ever mounted read-only), no reserved blocks, 4 KiB blocks (DAX needs the page size); the file
 * system fills the partition (the file is sparse: free space costs no disk).
 */
export async function makeRootfsImage(stage: string, image: string): Promise<{ imageMiB: number }> {
  await mkdir(join(stage, 'dev'), { recursive: true }); // for /dev/console
  const { bytes, inodes } = await treeBytes(stage);
  const layout = daxImageLayout((Math.ceil((bytes * 1.1) / MiB) + 16) * MiB);
  const fh = await open(image, 'w');
  try {
    await fh.truncate(layout.imageBytes);
  } finally {
    await fh.close();
  }
  await run(
    'mkfs.ext4',
    [
      '-q',
      '-F',
      '-t',
      'ext4',
      '-L',
      'kata-guest',
      '-b',
      '4096',
      '-m',
      '0',
      '-O',
      '^has_journal',
      '-N',
      String(inodes + 1024),
      '-E',
      `root_owner=0:0,offset=${layout.partitionOffset}`,
      '-d',
      stage,
      image,
      `${layout.partitionBytes / 1024}k`,
    ],
    { timeoutMs: 600_000 },
  );
  await addConsoleNode(`${image}?offset=${layout.partitionOffset}`);
  const out = await open(image, 'r+');
  try {
    for (const h of daxImageHeaders(layout)) await out.write(h.bytes, 0, h.bytes.length, h.offset);
    const st = await out.stat();
    if (st.size !== layout.imageBytes)
      throw new KataError('E_EXEC', `mkfs.ext4 changed the size of ${image} (${st.size} bytes, not ${layout.imageBytes})`);
  } finally {
    await out.close();
  }
  return { imageMiB: layout.imageBytes / MiB };
}

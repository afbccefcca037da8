/**
 * Container material for agent tests: a busybox rootfs (Debian's busybox-static and its applet
 * links, as in research shimv2 §7.1) and an OCI spec as a host runtime hands it over: `runc spec`'s
 * default (this host's runc) with what containerd and CRI add that the guest must rework (a
 * cgroupsPath, a netns path, a cgroup namespace, a host hook).
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { OciProcess, OciSpec } from '../../runtime-core/agent/client.js';

export function makeBusyboxRootfs(root: string): void {
  for (const d of ['bin', 'dev', 'proc', 'sys', 'tmp', 'etc', 'run', 'data']) mkdirSync(join(root, d), { recursive: true });
  copyFileSync('/bin/busybox', join(root, 'bin/busybox'));
  execFileSync('chmod', ['755', join(root, 'bin/busybox')]);
  for (const a of execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).split('\n')) {
    if (a && a !== 'busybox') symlinkSync('busybox', join(root, 'bin', a));
  }
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  writeFileSync(join(root, 'etc/group'), 'root:x:0:\ntty:x:5:\n');
}

let base: OciSpec | undefined;
function runcDefaultSpec(): OciSpec {
  if (!base) {
    const d = mkdtempSync(join(tmpdir(), 'krt-spec-'));
    try {
      execFileSync('runc', ['spec', '--bundle', d]);
      base = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8')) as OciSpec;
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  }
  return structuredClone(base);
}

export function ociProcess(args: string[], extra: Partial<OciProcess> = {}): OciProcess {
  return {
    terminal: false,
    user: { uid: 0, gid: 0 },
    args,
    env: ['PATH=/bin', 'TERM=xterm'],
    cwd: '/',
    ...extra,
  };
}

export function containerSpec(
  cid: string,
  args: string[],
  opts: { terminal?: boolean; hostname?: string; consoleSize?: { height: number; width: number } } = {},
): OciSpec {
  const s = runcDefaultSpec();
  s.process = { ...s.process!, ...ociProcess(args, { terminal: opts.terminal ?? false }), capabilities: s.process!.capabilities };
  if (opts.consoleSize) s.process.consoleSize = opts.consoleSize;
  s.hostname = opts.hostname ?? cid;
  s.root = { path: 'rootfs', readonly: false };
  s.linux!.cgroupsPath = `/default/${cid}`;
  s.linux!.namespaces = [
    ...(s.linux!.namespaces ?? []).filter((n) => n.type !== 'network'),
    { type: 'network', path: '/var/run/netns/cni-host-only' },
    { type: 'cgroup' },
  ];
  s.hooks = { prestart: [{ path: '/usr/local/bin/host-only-hook' }] };
  return s;
}

/**
 * The sandbox's host cgroup (sandbox_cgroup_only) on this host's real hierarchies (hybrid cgroup
 * v1 here): the supervisor, and so everything it starts later, joins the pod's cgroup in every
 * hierarchy (cpuset made usable); teardown moves it back and removes exactly the directories that
 * were made, also from the record alone after the supervisor died; a hierarchy the host does not
 * allow (mounted read-only) is skipped with the reason, the others still joined.
 */
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../../../host/exec.js';
import { cgroupfsPath, cgroupHierarchies, cgroupOf } from '../../../host/cgroups.js';
import { silentLogger } from '../../../host/log.js';
import type { PluginContext } from '../../../host/plugin.js';
import { SpawnNetlink } from '../../../host/netlink.js';
import { Sysfs } from '../../../host/sysfs.js';
import { cgroupPlugin } from '../../../runtime-core/sandbox/cgroup-resource.js';

const hierarchies = cgroupHierarchies();
const skip = hierarchies.length === 0 ? 'no cgroup hierarchy is mounted here' : false;
const ctx: PluginContext = {
  sandboxId: 'krt-cg',
  netns: undefined,
  log: silentLogger(),
  netlink: new SpawnNetlink(),
  sysfs: new Sysfs(),
  runDir: '/tmp',
};

function sleeper(t: { teardown(fn: () => void): void }): ChildProcess {
  const p = spawn('sleep', ['600'], { stdio: 'ignore' });
  t.teardown(() => void p.kill('SIGKILL'));
  return p;
}

t.test('systemd and relative cgroupsPaths become cgroupfs paths; ".." cannot climb', async (t) => {
  t.equal(
    cgroupfsPath('kubepods-besteffort-pod12.slice:cri-containerd:abc'),
    '/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-abc.scope',
  );
  t.equal(cgroupfsPath('system.slice::x'), '/system.slice/x.scope');
  t.equal(cgroupfsPath('/kubepods/burstable/pod1/abc'), '/kubepods/burstable/pod1/abc');
  t.equal(cgroupfsPath('krt/c1', '/user.slice/session'), '/user.slice/session/krt/c1', 'relative: below the runtime’s own cgroup');
  t.equal(cgroupfsPath('/a/../../b/./c'), '/a/b/c');
});

t.test('join every hierarchy, then teardown moves the process back and removes exactly what was made', { skip }, async (t) => {
  const top = `krt-cg-${randomBytes(3).toString('hex')}`;
  // A parent that exists already (as kubelet's pod cgroup does) in one hierarchy: it must stay.
  const pre = hierarchies[0]!;
  mkdirSync(join(pre.mount, top));
  t.teardown(() => {
    for (const h of hierarchies) {
      for (const d of [join(h.mount, top, 'pod1', 'sb1'), join(h.mount, top, 'pod1'), join(h.mount, top)]) {
        try {
          rmdirSync(d);
        } catch {
          /* gone */
        }
      }
    }
  });
  const p = sleeper(t);
  const before = Object.fromEntries(hierarchies.map((h) => [h.mount, cgroupOf(p.pid!, h)]));
  const att = await cgroupPlugin.attach(ctx, { path: `/${top}/pod1/sb1`, pid: p.pid! });
  t.same(att.resources.skipped, [], 'every hierarchy was allowed');
  t.same(att.resources.joined.map((j) => j.mount).sort(), hierarchies.map((h) => h.mount).sort(), 'joined in every mounted hierarchy');
  for (const h of hierarchies) t.equal(cgroupOf(p.pid!, h), `/${top}/pod1/sb1`, `${h.mount}: the process is in the pod's cgroup`);
  const cpuset = hierarchies.find((h) => h.controllers.includes('cpuset'));
  if (cpuset) t.not(readFileSync(join(cpuset.mount, top, 'pod1', 'sb1', 'cpuset.cpus'), 'utf8').trim(), '', 'cpuset given CPUs');
  t.same(
    att.resources.joined.find((j) => j.mount === pre.mount)?.created,
    [join(pre.mount, top, 'pod1'), join(pre.mount, top, 'pod1', 'sb1')],
    'the existing parent is not recorded as made',
  );

  await cgroupPlugin.detach(ctx, att);
  for (const h of hierarchies) t.equal(cgroupOf(p.pid!, h), before[h.mount], `${h.mount}: moved back where it was`);
  for (const h of hierarchies) t.notOk(existsSync(join(h.mount, top, 'pod1')), `${h.mount}: the pod and sandbox cgroups are gone`);
  t.ok(existsSync(join(pre.mount, top)), 'the parent that existed before is kept');
  for (const h of hierarchies.filter((x) => x !== pre))
    t.notOk(existsSync(join(h.mount, top)), `${h.mount}: the parent that was made is removed`);
});

t.test('after the supervisor died, the record alone removes the cgroups', { skip }, async (t) => {
  const top = `krt-cg-${randomBytes(3).toString('hex')}`;
  const p = sleeper(t);
  const att = await cgroupPlugin.attach(ctx, { path: `/${top}/sb`, pid: p.pid! });
  t.ok(att.resources.joined.length > 0);
  p.kill('SIGKILL');
  await new Promise((r) => p.once('exit', r));
  await cgroupPlugin.recover(ctx, JSON.parse(JSON.stringify(att)));
  for (const h of hierarchies) t.notOk(existsSync(join(h.mount, top)), `${h.mount}: nothing left`);
});

// A child process with a private mount namespace in which one hierarchy is read-only (as in a container).
const SCRIPT = `
import { cgroupPlugin } from ${JSON.stringify(fileURLToPath(new URL('../../../runtime-core/sandbox/cgroup-resource.js', import.meta.url)))};
const log = { warn() {}, info() {}, debug() {}, child() { return log; } };
const ctx = { sandboxId: 'krt-cg', netns: undefined, log, runDir: '/tmp' };
const att = await cgroupPlugin.attach(ctx, { path: process.argv[2], pid: Number(process.argv[3]) });
process.stdout.write(JSON.stringify(att.resources));
await cgroupPlugin.detach(ctx, att);
`;

t.test('a hierarchy the host does not allow is skipped with its reason; the rest is joined', { skip }, async (t) => {
  const ro = hierarchies.find((h) => h.version === 1 && h.controllers.includes('pids')) ?? hierarchies[0]!;
  const top = `krt-cg-${randomBytes(3).toString('hex')}`;
  const dir = join('/tmp', `krt-cgs-${randomBytes(3).toString('hex')}`);
  mkdirSync(dir);
  t.teardown(() => run('rm', ['-rf', dir]));
  writeFileSync(join(dir, 'attach.mjs'), SCRIPT);
  const p = sleeper(t);
  const r = await run('unshare', [
    '-m',
    '--propagation',
    'private',
    'sh',
    '-c',
    `mount -o remount,bind,ro ${ro.mount} && exec node ${join(dir, 'attach.mjs')} /${top}/sb ${p.pid}`,
  ]);
  const res = JSON.parse(r.stdout) as { joined: { mount: string }[]; skipped: { mount: string; why: string }[] };
  t.same(
    res.skipped.map((s) => s.mount),
    [ro.mount],
    'the read-only hierarchy is skipped',
  );
  t.match(res.skipped[0]?.why, /EROFS/, 'with the reason');
  t.equal(res.joined.length, hierarchies.length - 1, 'every other hierarchy is joined');
  for (const h of hierarchies) t.notOk(existsSync(join(h.mount, top)), `${h.mount}: nothing left after detach`);
});

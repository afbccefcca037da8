/**
 * The virtio-fs boundary seen from a real guest (TCG boots through the real CLI). The guest's root
 * plants symlinks (absolute and relative, at several depths) to a host victim directory holding a
 * tmpfs mount, an empty file and an empty directory, makes a set-uid program and tries device
 * nodes, in a read-write, a read-only and a nested share. Then every host-side operation that
 * touches shares runs: share and unshare with names and sources through the planted links, unshare
 * of names never shared, a nested share inside a share, a read-write share of a directory others
 * can reach, and `sandbox down` (once by the live supervisor, once from the persisted state after
 * the supervisor was SIGKILLed). Checked on the host: the victim, its mount and the sources are as
 * they were, no device node was made, nothing of the sandbox is left, and an unprivileged user
 * made for the test gains nothing. Reproductions D1, D4, D8, D13, D14 and D20 of the red-team
 * findings, as behaviours.
 */
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { run } from '../../../host/exec.js';
import { mountsUnder, unmountAllUnder } from '../../../host/mounts.js';
import {
  cli,
  explain,
  parseJson,
  pidAlive,
  residue,
  tempRuntime,
  viewPids,
  waitFor,
  type Runtime,
  type StatusView,
} from '../../helpers/sandbox.js';
import { unprivilegedUser, type TestUser } from '../../helpers/unprivileged-user.js';
import { makeVictim, type Victim, victimIntact } from '../../helpers/victim.js';

const G = '/run/kata-containers/shared/containers';

interface World {
  rt: Runtime;
  id: string;
  C: string[];
  victim: Victim;
  rw: string;
  ro: string;
  nested: string;
  pids: number[];
  supervisor: number;
  user: TestUser;
}

function tmp(t: Test, tag: string): string {
  const d = mkdtempSync(`/tmp/krt-${tag}-`);
  t.teardown(async () => {
    await unmountAllUnder(d).catch(() => {});
    if (mountsUnder(d).length === 0) await run('rm', ['-rf', '--one-file-system', d], { reject: false });
  });
  return d;
}

async function world(t: Test, tag: string): Promise<World | undefined> {
  const rt = tempRuntime(t);
  const v0 = await makeVictim(t, tag);
  // The shared sources sit below a 0700 directory: no other user can reach them.
  const base = tmp(t, `src-${tag}`);
  const [rw, ro, nested] = ['rw', 'ro', 'nested'].map((d) => join(base, d)) as [string, string, string];
  for (const d of [rw, ro, nested]) mkdirSync(d);
  copyFileSync('/usr/bin/id', join(rw, 'id-copy'));
  writeFileSync(join(ro, 'keep'), 'ro data');
  const user = await unprivilegedUser(t, `g${tag}`);
  const id = `krt-gsh-${tag}-${process.pid}`;
  const C = ['--config', rt.config];
  const up = await cli(['sandbox', 'up', '--id', id, ...C, '--json'], { timeoutMs: 300_000 });
  if (up.code !== 0) {
    t.fail(`sandbox up failed: ${explain(up)}`);
    return undefined;
  }
  const v = parseJson<StatusView>(up);
  const w: World = { rt, id, C, victim: v0, rw, ro, nested, pids: viewPids(v), supervisor: v.pids.supervisor!, user };
  for (const [src, name, extra] of [
    [rw, 'vol', []],
    [ro, 'ro', ['--readonly']],
    [nested, 'deep/a/inner', []],
  ] as const) {
    const s = await cli(['sandbox', 'share', id, '--source', src, '--name', name, ...extra, ...C]);
    t.equal(s.code, 0, `share ${name}: ${s.code === 0 ? 'ok' : explain(s)}`);
  }
  return w;
}

async function guest(w: World, script: string): Promise<{ code: number | null; out: string }> {
  const r = await cli(['exec', w.id, ...w.C, '--timeout', '60000', '--', 'sh', '-c', script], { timeoutMs: 120_000 });
  return { code: r.code, out: `${r.stdout}${r.stderr}` };
}

/** The guest's root attacks: links at depths 0-2, absolute and relative, in every share; set-uid; device nodes. */
async function plant(t: Test, w: World): Promise<void> {
  const rel = `${'../'.repeat(14)}${w.victim.dir.slice(1)}`;
  const links = (dir: string): string =>
    ['', '/a', '/a/b']
      .map((d) => `mkdir -p ${dir}${d} && ln -s ${w.victim.dir} ${dir}${d}/evil && ln -s ${rel} ${dir}${d}/evilrel`)
      .join(' && ');
  const rwPlant = await guest(w, `${links(`${G}/vol`)} && ${links(`${G}/deep/a/inner`)} && echo planted`);
  t.match(rwPlant.out, /planted/, `links planted in the read-write and the nested share: ${rwPlant.out.trim()}`);
  const roPlant = await guest(w, `ln -s ${w.victim.dir} ${G}/ro/evil; echo rc=$?`);
  t.match(roPlant.out, /rc=[1-9]/, 'the read-only share refuses a link');
  const suid = await guest(
    w,
    `chmod 4755 ${G}/vol/id-copy && cp ${G}/vol/id-copy ${G}/vol/id-root && chmod 4755 ${G}/vol/id-root && chmod 0777 ${G}/vol && echo ok`,
  );
  t.match(suid.out, /ok/, 'the guest can make set-uid files in its read-write share (its data)');
  const dev = await guest(
    w,
    `mknod ${G}/vol/null-node c 1 3; echo c=$?; mknod ${G}/vol/disk b 254 0; echo b=$?; mknod ${G}/deep/a/inner/n2 c 1 3; echo n=$?`,
  );
  t.match(dev.out, /c=[1-9][\s\S]*b=[1-9][\s\S]*n=[1-9]/, `device nodes are refused (virtiofsd drops CAP_MKNOD): ${dev.out.trim()}`);
  t.notOk(
    existsSync(join(w.rw, 'null-node')) || existsSync(join(w.rw, 'disk')) || existsSync(join(w.nested, 'n2')),
    'no device node on the host',
  );
  const mv = await guest(w, `mv ${G}/deep/a ${G}/deep/a.old; echo rc=$?`);
  t.match(mv.out, /rc=[1-9]/, "the guest cannot rename the sandbox's own directories around a nested share");
  t.ok(lstatSync(join(w.rw, 'a/b/evilrel')).isSymbolicLink(), 'the links are in the host source');
}

async function hostOps(t: Test, w: World): Promise<void> {
  const fails = async (args: string[], code: string, msg: RegExp, what: string): Promise<void> => {
    const r = await cli([...args, ...w.C]);
    t.equal(r.code, 1, `${what}: exit 1 ${r.code === 1 ? '' : explain(r)}`);
    t.match(r.stderr, code, `${what}: ${code}`);
    t.match(r.stderr, msg, `${what}: the message names the object and the fix`);
  };
  for (const name of ['vol/evil', 'vol/evilrel/sub', 'vol/a/b/evil', 'vol/a/evilrel/m', 'deep/a/inner/evil', 'nosuch']) {
    await fails(['sandbox', 'unshare', w.id, name], 'E_INVALID_ARGUMENT', /has no share named .*nothing was changed/, `unshare ${name}`);
  }
  const other = join(w.nested, '..', 'other');
  mkdirSync(other);
  for (const name of ['vol/evilrel/newdir/x', 'vol/a/inner', 'deep/a/inner/x']) {
    await fails(
      ['sandbox', 'share', w.id, '--source', other, '--name', name],
      'E_PATH_UNSAFE',
      /lies inside the share .*choose a name outside/,
      `share --name ${name}`,
    );
  }
  t.notOk(existsSync(join(w.rw, 'a/inner')) || existsSync(join(w.nested, 'x')), 'no mount point made in a source (D20)');
  for (const l of ['evil', 'evilrel', 'a/b/evil', 'a/b/evilrel']) {
    await fails(
      ['sandbox', 'share', w.id, '--source', join(w.rw, l), '--name', 'sub'],
      'E_PATH_UNSAFE',
      /is a symlink .*give the resolved path/,
      `share --source rw/${l}`,
    );
  }
  const open = tmp(t, 'open');
  await fails(
    ['sandbox', 'share', w.id, '--source', open, '--name', 'open'],
    'E_PATH_UNSAFE',
    /reached by other host users.*chmod 0700 a parent/,
    'share rw of a directory others can reach',
  );
  victimIntact(t, w.victim, 'after the refused operations');
  const st = parseJson<{ volumes: { name: string }[] }>(await cli(['sandbox', 'status', w.id, ...w.C, '--json']));
  t.same(st.volumes.map((v) => v.name).sort(), ['deep/a/inner', 'ro', 'vol'], 'the recorded shares are exactly the three made');
  const un = await cli(['sandbox', 'unshare', w.id, 'deep/a/inner', ...w.C]);
  t.equal(un.code, 0, `unshare of the recorded nested share ${un.code === 0 ? '' : explain(un)}`);
  t.ok(lstatSync(join(w.nested, 'a/evil')).isSymbolicLink(), "its source keeps the guest's files");
  const again = await cli(['sandbox', 'share', w.id, '--source', w.nested, '--name', 'deep/a/inner', ...w.C]);
  t.equal(again.code, 0, `and it can be shared again ${again.code === 0 ? '' : explain(again)}`);
}

/** The unprivileged user cannot use anything the guest left: not the set-uid files, not the sandbox tree. */
async function userGainsNothing(t: Test, w: World): Promise<void> {
  t.equal(statSync(join(w.rw, 'id-root')).mode & 0o4000, 0o4000, 'the set-uid bit the guest set is on the host file');
  for (const p of [
    join(w.rw, 'id-root'),
    join(w.rw, 'id-copy'),
    join(w.rt.stateDir, 'shared', 'sandboxes', w.id, 'shared', 'vol', 'id-root'),
  ]) {
    const r = await w.user.run([p, '-u']);
    t.ok(
      r.exitCode !== 0 || r.stdout.trim() === String(w.user.uid),
      `${w.user.name} cannot run ${p} as root: ${r.stdout.trim()}${r.stderr.trim()}`,
    );
  }
  const sh = await w.user.run(['ls', join(w.rt.stateDir, 'shared', 'sandboxes', w.id)]);
  t.not(sh.exitCode, 0, `nor enter the sandbox's shared tree: ${sh.stderr.trim()}`);
}

async function afterDown(t: Test, w: World, when: string): Promise<void> {
  victimIntact(t, w.victim, when);
  t.same(await residue(w.rt, { id: w.id, pids: w.pids }), [], `${when}: nothing of the sandbox left`);
  t.notOk(existsSync(join(w.rw, 'deep')) || existsSync(join(w.rw, 'inner')), `${when}: no mount point left in a source`);
  t.ok(
    lstatSync(join(w.rw, 'a/b/evil')).isSymbolicLink() && existsSync(join(w.rw, 'id-root')),
    `${when}: the guest's files stay in its source`,
  );
  t.equal(readFileSync(join(w.ro, 'keep'), 'utf8'), 'ro data', `${when}: the read-only source is unchanged`);
  t.same(readdirSync(w.ro), ['keep'], `${when}: and holds nothing new`);
}

t.test('planted links, set-uid files and devices: share ops and down by the supervisor change nothing outside', async (t) => {
  const w = await world(t, 'a');
  if (!w) return;
  await plant(t, w);
  await hostOps(t, w);
  await userGainsNothing(t, w);
  const down = await cli(['sandbox', 'down', w.id, ...w.C]);
  t.equal(down.code, 0, `down ${down.code === 0 ? '' : explain(down)}`);
  await afterDown(t, w, 'after down');
});

t.test('the same after the supervisor is SIGKILLed: down cleans from the state and changes nothing outside', async (t) => {
  const w = await world(t, 'b');
  if (!w) return;
  await plant(t, w);
  process.kill(w.supervisor, 'SIGKILL');
  await waitFor(() => !pidAlive(w.supervisor), 10_000).catch(() => {});
  await waitFor(() => w.pids.every((p) => !pidAlive(p)), 20_000).catch(() => {});
  victimIntact(t, w.victim, 'after the crash');
  await userGainsNothing(t, w);
  const down = await cli(['sandbox', 'down', w.id, ...w.C, '--json']);
  t.equal(down.code, 0, `down ${down.code === 0 ? '' : explain(down)}`);
  t.equal(parseJson<{ via: string }>(down).via, 'state', 'from the persisted state');
  await afterDown(t, w, 'after crash recovery');
});

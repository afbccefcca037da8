import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { tempNetns, vethPair } from '../helpers/netns.js';
import { filesUnder, installKataCni, invoke, tempDir, type RuntimeOptions } from './helpers/cni-runtime.js';
import { ingressDevs, namesIn } from './helpers/inspect.js';

/**
 * redteam D19: a CNI_NETNS that exists but is no namespace (a regular file, a directory, /dev/null)
 * is code 4 for ADD and CHECK as the README says, not 111 from nsenter, and DEL with it stays best
 * effort (it succeeds: nothing of ours can be in a file). A stateDir that cannot hold records (it
 * is a regular file) is code 5 for ADD, naming the record, not 100 from the temp-file cleanup; DEL
 * with it still succeeds and still removes the attachment from the kernel.
 */
const bin = await installKataCni(t);
const KATA = join(bin, 'kata-cni');
const host = await tempNetns(t, 'd19h');
const pod = await tempNetns(t, 'd19p');
await vethPair(pod, host);
const opts: RuntimeOptions = { hostNs: host, path: [bin] };
const scratch = tempDir(t, 'd19x');
const stateDir = tempDir(t, 'd19s');

const regularFile = join(scratch, 'netns-file');
writeFileSync(regularFile, '');
const directory = join(scratch, 'netns-dir');
mkdirSync(directory);

const conf = (netns: string, extra: Record<string, unknown> = {}): string =>
  JSON.stringify({
    cniVersion: '1.0.0',
    name: 'krt-d19',
    type: 'kata-cni',
    stateDir,
    prevResult: { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: netns }] },
    ...extra,
  });

for (const [what, path] of [
  ['a regular file', regularFile],
  ['a directory', directory],
  ['/dev/null', '/dev/null'],
] as const) {
  t.test(`CNI_NETNS that is ${what}`, async (t) => {
    const att = { containerId: 'krtd19', netns: path, ifname: 'eth0' };
    for (const command of ['ADD', 'CHECK']) {
      const r = await invoke(KATA, command, att, conf(path), opts);
      t.equal(r.exitCode, 1, `${command} fails`);
      t.equal(r.json?.code, 4, `${command}: code 4 (invalid environment) ${r.stdout}`);
      t.match(r.json?.msg, new RegExp(`CNI_NETNS "${path}" is not a network namespace`), `${command}: the message names CNI_NETNS`);
    }
    const del = await invoke(KATA, 'DEL', att, conf(path), opts);
    t.equal(del.exitCode, 0, `DEL is best effort: ${del.stdout}`);
    t.equal(del.stdout, '', 'DEL prints nothing');
    t.same(filesUnder(stateDir), [], 'no record left');
  });
}

t.test('DEL with CNI_NETNS that is no namespace also forgets a record left for that attachment', async (t) => {
  const att = { containerId: 'krtd19r', netns: pod.path, ifname: 'eth0' };
  const add = await invoke(KATA, 'ADD', att, conf(pod.path), opts);
  t.equal(add.exitCode, 0, add.stdout);
  const del = await invoke(KATA, 'DEL', { ...att, netns: regularFile }, conf(regularFile), opts);
  t.equal(del.exitCode, 0, del.stdout);
  t.same(filesUnder(stateDir), [], 'record removed');
  t.same(await namesIn(pod), ['eth0', 'lo', 'tap0_kata'], 'the real namespace was not the one named, so it is untouched');
  const clean = await invoke(KATA, 'DEL', att, conf(pod.path), opts);
  t.equal(clean.exitCode, 0, clean.stdout);
  t.same(await namesIn(pod), ['eth0', 'lo'], 'a record-less DEL with the right CNI_NETNS removes it');
});

t.test('ADD with stateDir a regular file: code 5 naming the record; nothing left; DEL still succeeds', async (t) => {
  const fileState = join(scratch, 'state-file');
  writeFileSync(fileState, 'not a directory');
  const att = { containerId: 'krtd19s', netns: pod.path, ifname: 'eth0' };
  const add = await invoke(KATA, 'ADD', att, conf(pod.path, { stateDir: fileState }), opts);
  t.equal(add.exitCode, 1);
  t.equal(add.json?.code, 5, `code 5 (I/O failure) ${add.stdout}`);
  t.match(add.json?.msg, /cannot write the attachment record .*krtd19s@eth0\.json: .*is stateDir ".*state-file" writable\?/);
  t.notMatch(add.json?.msg, /internal error|\.tmp/, 'not the temp-file cleanup error');
  t.same(await namesIn(pod), ['eth0', 'lo'], 'no tap');
  t.same(await ingressDevs(pod), [], 'no qdisc');
  const del = await invoke(KATA, 'DEL', att, conf(pod.path, { stateDir: fileState }), opts);
  t.equal(del.exitCode, 0, `DEL is best effort: ${del.stdout}`);
});

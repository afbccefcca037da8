#!/usr/bin/env node
// Trains kata-cni's V8 code cache on real calls (run by cni/build/bundle.mjs).
//
// A code cache made right after compiling holds only what V8 compiled eagerly; one made with every
// function compiled (--no-lazy) holds the whole plugin, most of which a call never runs (macvtap,
// GC, STATUS, error paths, the schema's rare branches), and V8 deserialises all of it at every
// start. This instead runs the training copy of the executable (the same head, body and pino
// parts, a boot that reads and writes the cache files named by KATA_CNI_TRAIN_CACHE; boot.ts) for
// VERSION, then ADD, CHECK and DEL of a real tcfilter attachment. Each call starts from the cache
// the previous one wrote and writes it back at exit with what it compiled, so the final cache
// holds the functions of the four calls (one cache for the head, one for the body), as V8 compiled them while running.
//
// It runs inside `unshare --net --mount` (bundle.mjs starts it so): the "host" is a network
// namespace of its own, /run is a tmpfs private to its mount namespace, and the pod namespace is
// made there with `ip netns add`, so nothing of it is visible to, or left on, the machine: the
// kernel removes both namespaces when the last process in them exits.
//
// Usage (inside unshare): node train-cache.mjs TRAINING_EXECUTABLE CACHE_FILE SCRATCH_DIR
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';

const [exe, cacheFile, scratch] = process.argv.slice(2);
if (!exe || !cacheFile || !scratch) throw new Error('usage: train-cache.mjs TRAINING_EXECUTABLE CACHE_FILE SCRATCH_DIR');

function sh(file, args) {
  const r = spawnSync(file, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')}: ${r.error?.message ?? r.stderr.trim()}`);
}

sh('mount', ['-t', 'tmpfs', '-o', 'mode=755', 'kata-cni-train', '/run']);
sh('ip', ['link', 'set', 'lo', 'up']);
sh('ip', ['netns', 'add', 'train-pod']);
sh('ip', ['link', 'add', 'train-host', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', 'train-pod']);
sh('ip', ['link', 'set', 'train-host', 'up']);
for (const line of ['addr add 10.99.0.2/24 dev eth0', 'link set eth0 up', 'link set lo up'])
  sh('ip', ['-n', 'train-pod', ...line.split(' ')]);

const netns = '/run/netns/train-pod';
const conf = (prevResult) =>
  JSON.stringify({ cniVersion: '1.0.0', name: 'kata-cni-train', type: 'kata-cni', stateDir: join(scratch, 'state'), prevResult });
// The executable runs as a runtime runs it (its shell lines start the helpers, then exec `node`
// from PATH): this Node first, whose V8 must be the one that reads the caches.
const env = (command) => ({
  PATH: `${dirname(process.execPath)}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`,
  CNI_COMMAND: command,
  CNI_CONTAINERID: 'train',
  CNI_NETNS: netns,
  CNI_IFNAME: 'eth0',
  KATA_CNI_TIMING: '1',
  KATA_CNI_TRAIN_CACHE: cacheFile,
});
const prev = { cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: netns }], ips: [{ address: '10.99.0.2/24', interface: 0 }] };

let added;
for (const command of ['VERSION', 'ADD', 'CHECK', 'DEL']) {
  const input = command === 'VERSION' ? '{"cniVersion":"1.0.0"}' : conf(command === 'ADD' ? prev : added);
  const r = spawnSync(exe, [], { env: env(command), input, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`training ${command} failed (exit ${r.status}): ${r.stdout.trim()} ${r.stderr.trim()}`);
  if (command === 'ADD') added = JSON.parse(r.stdout);
  const marks = JSON.parse(/^kata-cni-timing (.*)$/m.exec(r.stderr)?.[1] ?? '{}');
  if (command !== 'VERSION' && marks['compiled-from-cache'] === undefined) throw new Error(`training ${command}: the cache was rejected`);
  if (command !== 'VERSION' && marks['head-compiled-from-cache'] === undefined)
    throw new Error(`training ${command}: the head's cache was rejected`);
  if (!existsSync(cacheFile) || !existsSync(`${cacheFile}.head`)) throw new Error(`training ${command}: no code cache written`);
  process.stderr.write(`kata-cni: code cache trained on ${command} (${(statSync(cacheFile).size / 1024).toFixed(0)} KiB)\n`);
}

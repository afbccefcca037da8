import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../../../host/exec.js';
import { sleep } from '../../../host/retry.js';
import { attachEndpoint, detachEndpoint } from '../../../plugins/network/endpoint.js';
import { readLink } from '../../../plugins/network/link-info.js';
import type { NetnsRef } from '../../../host/netns.js';
import { makeCtx, podWithVeth } from './endpoint-fixtures.js';

/**
 * Proves the redirect carries frames both ways, with real readers and writers (socat, from the
 * Debian package the suite installs): a reader attached to the tap plays the VM.
 *   host peer --UDP--> eth0 ingress --mirred--> tap (read by socat)      [pod -> guest]
 *   socat writes a frame into the tap --> tap ingress --mirred--> eth0 --> host peer (captured) [guest -> pod]
 */

function startIn(t: { teardown(fn: () => unknown): void }, ns: NetnsRef, args: string[]): ChildProcess {
  const child = spawn('nsenter', [`--net=${ns.path}`, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
}

async function waitFor(cond: () => Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function stats(ns: NetnsRef, dev: string): Promise<{ rx: number; tx: number }> {
  const j = JSON.parse((await run('ip', ['-n', ns.name!, '-s', '-j', 'link', 'show', 'dev', dev])).stdout) as {
    stats64: { rx: { packets: number }; tx: { packets: number } };
  }[];
  return { rx: j[0]!.stats64.rx.packets, tx: j[0]!.stats64.tx.packets };
}

async function filterPackets(ns: NetnsRef, dev: string): Promise<number> {
  const j = JSON.parse((await run('tc', ['-n', ns.name!, '-s', '-j', 'filter', 'show', 'dev', dev, 'parent', 'ffff:'])).stdout) as {
    options?: { actions?: { stats?: { packets?: number } }[] };
  }[];
  return j.flatMap((f) => f.options?.actions ?? []).reduce((n, a) => n + (a.stats?.packets ?? 0), 0);
}

t.test('frames cross the tc redirect in both directions', async (t) => {
  const { pod, host, peer } = await podWithVeth(t);
  const ctx = await makeCtx(t, pod);
  const link = await readLink(ctx, 'eth0');
  const a = await attachEndpoint(ctx, { link, index: 0, model: 'tcfilter', queues: 1, vhost: false });
  t.teardown(() => detachEndpoint(ctx, a));

  // pod -> guest: a reader on the tap (the "VM"), a UDP datagram from the host peer to the pod IP.
  const cap = join(ctx.runDir, 'tap.cap');
  const reader = startIn(t, pod, ['socat', '-u', 'TUN,tun-name=tap0_kata,tun-type=tap,iff-no-pi', `OPEN:${cap},creat,trunc`]);
  await waitFor(
    async () => (await run('ip', ['-n', pod.name!, '-j', 'link', 'show', 'dev', 'tap0_kata'])).stdout.includes('LOWER_UP'),
    'the reader to attach to the tap',
  );
  const tap0 = await stats(pod, 'tap0_kata');
  const f0 = await filterPackets(pod, 'eth0');
  await run('ip', ['-n', host.name!, 'neigh', 'replace', '10.77.0.2', 'lladdr', link.mac, 'dev', peer, 'nud', 'permanent']);
  const marker = `KRT-FWD-${randomBytes(6).toString('hex')}`;
  await run('nsenter', [`--net=${host.path}`, 'socat', '-u', 'STDIN', 'UDP-SENDTO:10.77.0.2:9999'], { input: marker });
  await waitFor(async () => (await readFile(cap).catch(() => Buffer.alloc(0))).includes(marker), 'the datagram to reach the tap reader');
  t.pass('the datagram sent to the pod IP was read from the tap');
  t.ok((await stats(pod, 'tap0_kata')).tx > tap0.tx, 'tap TX counter rose');
  t.ok((await filterPackets(pod, 'eth0')) > f0, 'eth0 -> tap filter counted packets');
  reader.kill('SIGKILL');
  await new Promise((r) => reader.once('exit', r));

  // guest -> pod: capture on the host peer, write one Ethernet frame into the tap.
  const hostCap = join(ctx.runDir, 'peer.cap');
  const sniffer = startIn(t, host, ['socat', '-u', `INTERFACE:${peer}`, `OPEN:${hostCap},creat,trunc`]);
  const back = `KRT-REV-${randomBytes(6).toString('hex')}`;
  const frame = Buffer.alloc(64);
  Buffer.from('ffffffffffff', 'hex').copy(frame, 0);
  Buffer.from(link.mac.replace(/:/g, ''), 'hex').copy(frame, 6);
  frame.writeUInt16BE(0x88b5, 12); // IEEE local experimental ethertype
  Buffer.from(back).copy(frame, 14);
  const framePath = join(ctx.runDir, 'frame.bin');
  await writeFile(framePath, frame);
  const ft0 = await filterPackets(pod, 'tap0_kata');
  // The sniffer binds its packet socket asynchronously: write the frame again until it is seen.
  let seen = false;
  for (let i = 0; i < 20 && !seen; i++) {
    t.equal(sniffer.exitCode, null, 'sniffer running');
    await run('nsenter', [`--net=${pod.path}`, 'socat', '-u', `OPEN:${framePath}`, 'TUN,tun-name=tap0_kata,tun-type=tap,iff-no-pi']);
    seen = await waitFor(async () => (await readFile(hostCap).catch(() => Buffer.alloc(0))).includes(back), 'frame', 300).then(
      () => true,
      () => false,
    );
  }
  t.ok(seen, 'frame captured on the host peer');
  t.pass('the frame the "guest" wrote came out of the host-side peer');
  t.ok((await filterPackets(pod, 'tap0_kata')) > ft0, 'tap -> eth0 filter counted packets');
});

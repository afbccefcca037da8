import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../host/exec.js';
import type { Logger } from '../../host/log.js';
import { createNetns, deleteNetns, type NetnsRef } from '../../host/netns.js';
import { sandboxDown, sandboxExecCollect, sandboxShare, sandboxStatus, sandboxUnshare, sandboxUp } from './sandbox-commands.js';

/** The demo's pod network, as a CNI ptp plugin would leave it. */
const DEMO_NET = { pod: '10.88.0.2/24', gateway: '10.88.0.1', host: '10.88.0.1/24', mtu: 1450 };

type Out = (line: string) => void;

async function residue(tag: string): Promise<string[]> {
  const left: string[] = [];
  const ns = (await run('ip', ['netns', 'list'])).stdout
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.includes(tag));
  if (ns.length) left.push(`namespaces: ${ns.join(' ')}`);
  const procs = (await run('ps', ['-eo', 'pid=,args='])).stdout
    .split('\n')
    .filter((l) => l.includes(tag) && /qemu-system|virtiofsd|supervisor/.test(l));
  if (procs.length) left.push(`processes: ${procs.join('; ')}`);
  const mounts = (await readFile('/proc/self/mounts', 'utf8')).split('\n').filter((l) => l.includes(tag));
  if (mounts.length) left.push(`mounts: ${mounts.length}`);
  return left;
}

/**
 * End to end on this machine: a pod netns with a veth as a CNI plugin would make it (its peer in a
 * second namespace standing for the host side), a sandbox on the embedded guest, what the guest
 * sees, a ping from the guest to the host side through the tc redirect, teardown, and a residue check.
 */
export async function demo(out: Out, progress: Out, log: Logger, opts: { config?: string; keep?: boolean } = {}): Promise<boolean> {
  const tag = randomBytes(3).toString('hex');
  const id = `demo-${tag}`;
  let pod: NetnsRef | undefined;
  let host: NetnsRef | undefined;
  let up = false;
  let ok = true;
  // A read-write share must not be reachable by other users (a guest's set-uid files would be
  // theirs to run): the shared directory sits below a 0700 one (mkdtemp makes it so).
  const hostParent = await mkdtemp(join(tmpdir(), `kr-demo-${tag}-`));
  const hostDir = join(hostParent, 'share');
  await mkdir(hostDir);
  try {
    out(
      `1. pod network: namespace kr-demo-${tag} with eth0 ${DEMO_NET.pod} (mtu ${DEMO_NET.mtu}), default route via ${DEMO_NET.gateway}; its veth peer in kr-demoh-${tag}`,
    );
    pod = await createNetns(`kr-demo-${tag}`);
    host = await createNetns(`kr-demoh-${tag}`);
    await run('ip', [
      '-n',
      host.name!,
      'link',
      'add',
      'veth0',
      'mtu',
      String(DEMO_NET.mtu),
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      pod.name!,
    ]);
    await run('ip', ['-n', host.name!, '-batch', '-'], {
      input: `link set lo up\nlink set veth0 up\naddr add ${DEMO_NET.host} dev veth0\n`,
    });
    await run('ip', ['-n', pod.name!, '-batch', '-'], {
      input: `link set lo up\nlink set eth0 mtu ${DEMO_NET.mtu}\naddr add ${DEMO_NET.pod} dev eth0\nlink set eth0 up\nroute add default via ${DEMO_NET.gateway} dev eth0\n`,
    });

    out(`2. sandbox up ${id} (QEMU + virtiofsd + tc redirect; the first run builds the guest kit)`);
    const t0 = Date.now();
    const r = await sandboxUp({ id, netns: pod.name!, ...(opts.config ? { config: opts.config } : {}), progress }, log);
    up = true;
    const sb = r.sandbox;
    out(
      `   running after ${((Date.now() - t0) / 1000).toFixed(1)} s: accel ${sb.accel ?? '?'}, pids ${Object.entries(sb.pids)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')}`,
    );
    for (const e of sb.endpoints)
      out(`   endpoint ${e.name} (${e.type}) -> ${e.tap ?? '-'}  mac ${e.mac}  mtu ${e.mtu}  ${e.addresses.join(' ')}`);
    const share = sb.shares[0];
    if (share) out(`   share ${share.tag}: host ${share.hostDir} -> guest ${share.guestMountPoint}`);

    out('3. what the guest sees');
    const guestCmd = async (argv: string[], show = true): Promise<number> => {
      const x = await sandboxExecCollect(id, argv, opts.config, log);
      if (show) {
        out(`   guest$ ${argv.join(' ')}`);
        for (const l of (x.stdout + x.stderr).trimEnd().split('\n')) if (l !== '') out(`     ${l}`);
      }
      return x.status;
    };
    await guestCmd(['ip', '-br', 'addr']);
    await guestCmd(['ip', 'route']);

    out(`4. a host directory shared over virtio-fs (${hostDir})`);
    await writeFile(join(hostDir, 'hello.txt'), `hello from the host, sandbox ${id}\n`);
    const vol = await sandboxShare(id, { source: hostDir, name: 'demo', readonly: false }, opts.config, log);
    out(`   shared as ${vol.name}: guest ${vol.guestPath}`);
    if ((await guestCmd(['cat', `${vol.guestPath}/hello.txt`])) !== 0) ok = false;
    await guestCmd(['sh', '-c', `echo written by the guest > ${vol.guestPath}/from-guest.txt`]);
    const back = await readFile(join(hostDir, 'from-guest.txt'), 'utf8').catch(() => '');
    out(`   host reads ${join(hostDir, 'from-guest.txt')}: ${back.trim() || '(missing)'}`);
    if (back.trim() !== 'written by the guest') ok = false;
    const ro = await sandboxShare(id, { source: hostDir, name: 'demo-ro', readonly: true }, opts.config, log);
    const roWrite = await guestCmd(['touch', `${ro.guestPath}/nope`], false);
    out(
      `   the same directory shared read-only as ${ro.name}: a write from the guest ${roWrite === 0 ? 'SUCCEEDED (wrong)' : 'is refused'}`,
    );
    if (roWrite === 0) ok = false;
    await sandboxUnshare(id, 'demo-ro', opts.config, log);
    await sandboxUnshare(id, 'demo', opts.config, log);
    const st = await sandboxStatus(id, opts.config, log);
    const mounts = (st.guest as { mounts?: { fstype: string; mount_point: string }[] } | undefined)?.mounts ?? [];
    out(`   guest mounts: ${mounts.map((m) => `${m.mount_point} (${m.fstype})`).join(', ')}`);

    out(`5. ping from the guest to the host side ${DEMO_NET.gateway} (through the tap and the tc redirect)`);
    if ((await guestCmd(['ping', '-c', '3', '-W', '2', DEMO_NET.gateway])) !== 0) ok = false;
  } catch (e) {
    ok = false;
    out(`demo failed: ${(e as Error).message}`);
  } finally {
    if (up && !opts.keep) {
      out(`6. sandbox down ${id}`);
      const d = await sandboxDown(id, opts.config, log).catch((e: Error) => {
        ok = false;
        out(`   down failed: ${e.message}`);
        return undefined;
      });
      if (d) out(`   ${d.state} (via ${d.via})`);
    }
    if (!opts.keep) {
      await rm(hostParent, { recursive: true, force: true });
      if (pod) await deleteNetns(pod);
      if (host) await deleteNetns(host);
      const left = await residue(tag);
      out(
        left.length === 0
          ? '7. nothing left: no namespace, process, tap or mount of the demo remains'
          : `7. LEFT BEHIND: ${left.join('; ')}`,
      );
      if (left.length) ok = false;
    } else {
      out(
        `kept: sandbox ${id}, namespaces kr-demo-${tag} kr-demoh-${tag} (take down with: kata-resources sandbox down ${id}; ip netns del ...)`,
      );
    }
  }
  out(ok ? 'demo: OK' : 'demo: FAILED');
  return ok;
}

/**
 * The acceptance run of Kubernetes' path, driven as kubelet drives containerd's CRI: two pods side by
 * side with the kata-resources runtime handler, each in its own VM (one QEMU each, in the pod's
 * cgroup, sized from the pod's limits), a busybox container that writes to stdout and stderr,
 * pings the bridge gateway and leaves a termination message, its exit code and its log in CRI's
 * format under log_path, ExecSync in a second long-running container, then StopPodSandbox +
 * RemovePodSandbox and nothing of ours left. With kata-cni in the chain the VM uses kata-cni's tap
 * and CRI's CNI DEL removes it.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { cgroupHierarchies } from '../../../host/cgroups.js';
import { processesMentioning } from '../../helpers/sandbox.js';
import { BUSYBOX_IMAGE, criRig, HANDLER, type CriRig } from './cri-rig.js';
import type { PodSandboxConfig } from './cri-client.js';
import { criResidue } from './residue.js';

interface EndpointRecord {
  kind: string;
  phase: string;
  data?: { resources: { link: string; tap?: string; preattachedTap?: string } };
}

function endpointsOf(r: CriRig, podId: string): EndpointRecord['data'][] {
  const s = JSON.parse(readFileSync(join(r.stateDir, 'sandboxes', podId, 'state.json'), 'utf8')) as { resources: EndpointRecord[] };
  return s.resources.filter((x) => x.kind === 'endpoint' && x.phase === 'done').map((x) => x.data);
}

function qemusOf(podId: string, r: CriRig): { pid: number; cmdline: string }[] {
  return processesMentioning(r.stateDir).filter(
    (p) => p.cmdline.includes('qemu-system') && p.cmdline.includes(`sandbox-${podId.slice(0, 20)}`),
  );
}

export async function twoPods(t: Test, kataCni: boolean): Promise<void> {
  const r = await criRig(t, { kataCni });
  const limited = r.podConfig('pa', {});
  limited.linux!.resources = { cpu_period: 100000, cpu_quota: 100000, memory_limit_in_bytes: 128 * 1024 * 1024 };
  const plain = r.podConfig('pb');
  const configs: PodSandboxConfig[] = [limited, plain];
  for (const c of configs) mkdirSync(c.log_directory!, { recursive: true });

  const t0 = Date.now();
  const pods = await Promise.all(configs.map((c) => r.cri.runPodSandbox(c, HANDLER)));
  t.comment(`two pods up side by side in ${Date.now() - t0} ms`);
  for (const [i, id] of pods.entries()) {
    const st = await r.cri.podSandboxStatus(id);
    t.equal(st.state, 'SANDBOX_READY', `pod ${configs[i]!.metadata.name} is ready`);
    t.match(st.network?.ip, /^10\.\d+\.7\.\d+$/, `with an address from the bridge's subnet (${st.network?.ip})`);
    const qemu = qemusOf(id, r);
    t.equal(qemu.length, 1, `one QEMU for pod ${configs[i]!.metadata.name}`);
    const cg = qemu[0] ? readFileSync(`/proc/${qemu[0].pid}/cgroup`, 'utf8') : '';
    const want = `${configs[i]!.linux!.cgroup_parent}/${id}`;
    for (const h of cgroupHierarchies().filter((x) => x.version === 1 && x.controllers.includes('memory')))
      t.match(cg, new RegExp(`:memory:${want}\\n`), `its QEMU runs in the pod's cgroup (${h.mount})`);
    const eps = endpointsOf(r, id);
    t.equal(eps.length, 1, 'one endpoint (eth0)');
    if (kataCni) {
      t.match(eps[0], { resources: { link: 'eth0', preattachedTap: 'tap0_kata' } }, "the VM uses kata-cni's tap");
      t.notOk(eps[0]?.resources.tap, 'and made none of its own');
      t.ok(readFileSync(join(r.kataCniState, 'krt-cri', `${id}@eth0.json`), 'utf8'), 'kata-cni recorded the attachment');
    } else {
      t.match(eps[0], { resources: { link: 'eth0', tap: 'tap0_kata' } }, 'the shim made the tap and redirect itself');
    }
  }
  t.not(qemusOf(pods[0]!, r)[0]?.pid, qemusOf(pods[1]!, r)[0]?.pid, 'two VMs');
  const netns = (await r.c.inMnt('ls', ['-A', '/run/netns'])).split('\n').filter((n) => n.startsWith('cni-'));
  t.equal(netns.length, 2, 'CRI made a network namespace per pod (the residue check looks for these)');

  for (const [i, podId] of pods.entries()) {
    const cfg = configs[i]!;
    const name = cfg.metadata.name;
    const termLog = join(cfg.log_directory!, 'termination-log');
    writeFileSync(termLog, '');
    const c1 = await r.cri.createContainer(
      podId,
      {
        metadata: { name: 'c1' },
        image: { image: BUSYBOX_IMAGE },
        command: [
          'sh',
          '-c',
          `echo hello-from-${name}; echo to-stderr >&2; ping -c 1 -W 10 ${r.gateway} >/dev/null && echo ping-ok; echo bye-${name} > /dev/termination-log`,
        ],
        mounts: [{ container_path: '/dev/termination-log', host_path: termLog }],
        log_path: 'c1/0.log',
      },
      cfg,
    );
    await r.cri.startContainer(c1);
    const st = await r.cri.waitContainer(c1, 'CONTAINER_EXITED');
    t.equal(st.state, 'CONTAINER_EXITED', `${name}/c1 exited`);
    t.equal(st.exit_code, 0, 'with code 0');
    t.equal(st.reason, 'Completed');
    const log = readFileSync(join(cfg.log_directory!, 'c1', '0.log'), 'utf8');
    t.match(log, new RegExp(`^\\S+Z stdout F hello-from-${name}$`, 'm'), 'stdout is in the log, in CRI format');
    t.match(log, /^\S+Z stderr F to-stderr$/m, 'stderr too');
    t.match(log, /^\S+Z stdout F ping-ok$/m, 'the bridge gateway answered the ping from the VM');
    t.equal(readFileSync(termLog, 'utf8'), `bye-${name}\n`, "the termination message reached kubelet's file on the host");

    const c2 = await r.cri.createContainer(
      podId,
      { metadata: { name: 'c2' }, image: { image: BUSYBOX_IMAGE }, command: ['sleep', '600'], log_path: 'c2/0.log' },
      cfg,
    );
    await r.cri.startContainer(c2);
    t.equal((await r.cri.containerStatus(c2)).state, 'CONTAINER_RUNNING', `${name}/c2 runs`);
    const ex = await r.cri.execSync(c2, ['sh', '-c', 'echo out; echo err >&2; exit 3']);
    t.same([ex.stdout.toString(), ex.stderr.toString(), ex.exit_code], ['out\n', 'err\n', 3], 'ExecSync: output and exit code');
  }

  // Sizing: the limited pod's VM has one vCPU and 128 MiB more than the other (Kata's sandbox sizing).
  const size = async (podId: string): Promise<{ cpus: number; memKiB: number }> => {
    const c = (await r.cri.listContainers()).find((x) => x.pod_sandbox_id === podId && x.state === 'CONTAINER_RUNNING')!;
    const out = (await r.cri.execSync(c.id, ['sh', '-c', 'nproc; head -1 /proc/meminfo'])).stdout.toString();
    const [cpus, mem] = out.split('\n');
    return { cpus: Number(cpus), memKiB: Number(/(\d+) kB/.exec(mem ?? '')?.[1]) };
  };
  const [sa, sb] = [await size(pods[0]!), await size(pods[1]!)];
  t.equal(sa.cpus, sb.cpus + 1, `the limited pod's VM has one more vCPU (${sa.cpus} vs ${sb.cpus})`);
  const extraMiB = (sa.memKiB - sb.memKiB) / 1024;
  t.ok(extraMiB > 120 && extraMiB < 136, `and 128 MiB more memory (${extraMiB.toFixed(1)} MiB)`);

  for (const id of pods) {
    await r.cri.stopPodSandbox(id);
    await r.cri.removePodSandbox(id);
  }
  t.same(await r.cri.listPodSandbox(), [], 'no pod left in CRI');
  t.same(await r.cri.listContainers(), [], 'no container left in CRI');
  t.same(await criResidue(r, { kataCni }), [], 'nothing of ours left: no VM, virtiofsd, shim, netns, tap, mount, record, state, cgroup');
  if (kataCni) {
    const log = readFileSync(join(r.kataCniState, '..', 'kata-cni.log'), 'utf8');
    // Not only called: kata-cni found its record and took the tap and redirects down in the pod's
    // namespace (a DEL that found nothing would log another message; the netns going would hide it).
    for (const id of pods)
      t.match(
        log,
        new RegExp(`"command":"DEL","containerId":"${id}".*"record":true,"msg":"detached"`),
        `CRI's CNI DEL ran through kata-cni for ${id.slice(0, 12)} and removed its attachment`,
      );
  }
}

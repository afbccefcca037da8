import t from 'tap';
import { defaultConfig } from '../../runtime-core/config/defaults.js';
import { podSizing } from '../../shim/pod-sizing.js';
import { capturingLogger } from '../helpers/runtime-core.js';

/** Kata's static sandbox sizing from containerd's CRI annotations (the sum of the pod's container limits). */
const base = (): ReturnType<typeof defaultConfig> => {
  const c = defaultConfig();
  return { ...c, hypervisor: { ...c.hypervisor, vcpus: 1, maxVcpus: 8, memoryMiB: 512, maxMemoryMiB: 4096 } };
};

t.test('quota/period CPUs and the memory limit are added to the defaults, the vCPUs rounded up (Kata: 2.2 -> +3)', async (t) => {
  const { log } = capturingLogger();
  const c = podSizing(
    base(),
    {
      'io.kubernetes.cri.sandbox-cpu-period': '100000',
      'io.kubernetes.cri.sandbox-cpu-quota': '220000',
      'io.kubernetes.cri.sandbox-cpu-shares': '2253',
      'io.kubernetes.cri.sandbox-memory': String(256 * 1024 * 1024 + 5),
    },
    log,
  );
  t.equal(c.hypervisor.vcpus, 4, '1 + 2.2 CPUs -> 4 vCPUs');
  t.equal(c.hypervisor.memoryMiB, 768, '512 + 256 MiB (whole MiB)');
});

t.test('no limits (quota -1 or 0, memory 0), or no annotations: the configured default', async (t) => {
  const { log } = capturingLogger();
  const cfg = base();
  t.equal(podSizing(cfg, {}, log), cfg, 'unchanged without annotations');
  const c = podSizing(
    cfg,
    {
      'io.kubernetes.cri.sandbox-cpu-period': '100000',
      'io.kubernetes.cri.sandbox-cpu-quota': '-1',
      'io.kubernetes.cri.sandbox-memory': '0',
    },
    log,
  );
  t.equal(c.hypervisor.vcpus, 1);
  t.equal(c.hypervisor.memoryMiB, 512);
});

t.test('beyond the maxima: capped with a warning; a malformed value is ignored with a warning', async (t) => {
  const { log, lines } = capturingLogger();
  const c = podSizing(
    base(),
    {
      'io.kubernetes.cri.sandbox-cpu-period': '100000',
      'io.kubernetes.cri.sandbox-cpu-quota': '2000000',
      'io.kubernetes.cri.sandbox-memory': String(8 * 1024 * 1024 * 1024),
    },
    log,
  );
  t.equal(c.hypervisor.vcpus, 8, 'capped at default_maxvcpus');
  t.equal(c.hypervisor.memoryMiB, 4096, 'capped at the memory maximum');
  t.equal(lines.filter((l) => l.level === 40).length, 2, 'a warning for each');
  const bad = capturingLogger();
  const d = podSizing(base(), { 'io.kubernetes.cri.sandbox-memory': '1Gi' }, bad.log);
  t.equal(d.hypervisor.memoryMiB, 512, 'ignored');
  t.match(bad.lines.find((l) => l.level === 40)?.msg, /sandbox-memory is not an integer/);
});

import t from 'tap';
import { isKataError } from '../../host/errors.js';
import { defaultConfig } from '../../runtime-core/config/defaults.js';
import type { SandboxConfig } from '../../runtime-core/config/types.js';
import { applyKataAnnotations } from '../../shim/kata-annotations.js';
import { capturingLogger } from '../helpers/runtime-core.js';

/**
 * Kata's per-pod io.katacontainers.config.* annotations: hypervisor ones only when the file's
 * enable_annotations allows the name (whole-name regular expressions), runtime ones always; bad
 * values, names not enabled and host paths fail with E_CONFIG naming the annotation and the fix.
 */
const H = 'io.katacontainers.config.hypervisor.';
const R = 'io.katacontainers.config.runtime.';

function base(enable: string[]): SandboxConfig {
  const c = defaultConfig();
  return {
    ...c,
    source: '/etc/kata-resources/configuration.toml',
    hypervisor: {
      ...c.hypervisor,
      vcpus: 1,
      maxVcpus: 8,
      memoryMiB: 512,
      maxMemoryMiB: 4096,
      kernelParams: ['a=1'],
      enableAnnotations: enable,
    },
  };
}

function refusal(
  t: { ok(v: unknown, m: string): void; match(v: string, p: RegExp, m: string): void; fail(m: string): void },
  f: () => unknown,
  pattern: RegExp,
  what: string,
): void {
  try {
    f();
    t.fail(`${what}: accepted`);
  } catch (e) {
    t.ok(isKataError(e, 'E_CONFIG'), `${what}: E_CONFIG`);
    t.match((e as Error).message, pattern, `${what}: ${(e as Error).message}`);
  }
}

t.test('enabled hypervisor annotations and runtime annotations are applied; the input is not changed', async (t) => {
  const { log, lines } = capturingLogger();
  const cfg = base(['default_vcpus', 'default_memory', 'kernel_params', 'disable_image_nvdimm']);
  const c = applyKataAnnotations(
    cfg,
    {
      [`${H}default_vcpus`]: '1.5',
      [`${H}default_memory`]: '1024',
      [`${H}kernel_params`]: ' b=2  c ',
      [`${H}disable_image_nvdimm`]: 'true',
      [`${R}sandbox_cgroup_only`]: 'false',
      [`${R}internetworking_model`]: 'macvtap',
      'io.kubernetes.cri.sandbox-id': 'x',
    },
    log,
  );
  t.equal(c.hypervisor.vcpus, 2, '1.5 vCPUs -> 2 (whole vCPUs, as Kata)');
  t.equal(c.hypervisor.memoryMiB, 1024);
  t.same(c.hypervisor.kernelParams, ['a=1', 'b=2', 'c'], "appended after the file's");
  t.equal(c.hypervisor.disableImageNvdimm, true);
  t.equal(c.runtime.sandboxCgroupOnly, false, 'runtime annotations need no enable_annotations');
  t.equal(c.runtime.internetworkingModel, 'macvtap');
  t.equal(cfg.hypervisor.vcpus, 1, 'the loaded configuration is not changed');
  t.same(cfg.hypervisor.kernelParams, ['a=1']);
  t.ok(
    lines.some((l) => l.level === 30 && /annotations applied/.test(String(l.msg))),
    'what was applied is logged',
  );
  const none = base([]);
  t.equal(applyKataAnnotations(none, { 'io.kubernetes.cri.sandbox-id': 'x' }, log), none, 'no Kata annotations: the same object');
});

t.test('enable_annotations entries are regular expressions on the whole name', async (t) => {
  const { log } = capturingLogger();
  t.equal(applyKataAnnotations(base(['default_.*']), { [`${H}default_memory`]: '256' }, log).hypervisor.memoryMiB, 256, 'default_.*');
  t.equal(applyKataAnnotations(base(['.*']), { [`${H}default_vcpus`]: '3' }, log).hypervisor.vcpus, 3, '.*');
  refusal(
    t,
    () => applyKataAnnotations(base(['default']), { [`${H}default_vcpus`]: '3' }, log),
    /not enabled/,
    '"default" is not default_vcpus',
  );
  refusal(
    t,
    () => applyKataAnnotations(base(['(']), { [`${H}default_vcpus`]: '3' }, log),
    /not enabled/,
    'a broken pattern matches nothing',
  );
});

t.test('a hypervisor annotation that is not enabled fails the pod, naming the key and the file to change', async (t) => {
  const { log } = capturingLogger();
  refusal(
    t,
    () => applyKataAnnotations(base(['kernel_params']), { [`${H}default_memory`]: '2048' }, log),
    /io\.katacontainers\.config\.hypervisor\.default_memory: not enabled: add "default_memory" to enable_annotations in \[hypervisor\.qemu\] of \/etc\/kata-resources\/configuration\.toml/,
    'default_memory not enabled',
  );
});

t.test('bad values and sizes beyond the maxima fail with what is expected', async (t) => {
  const { log } = capturingLogger();
  const all = base(['.*']);
  for (const [name, value, want] of [
    ['default_vcpus', 'two', /not a number of vCPUs > 0/],
    ['default_vcpus', '0', /not a number of vCPUs > 0/],
    ['default_memory', '64', /not an integer >= 128/],
    ['default_memory', '1Gi', /not an integer >= 128/],
    ['disable_image_nvdimm', 'yes', /not true or false/],
    ['block_device_driver', 'nvdimm', /not virtio-blk or virtio-scsi/],
    ['virtio_fs_cache', 'sometimes', /not never, metadata, auto or always/],
  ] as const) {
    refusal(t, () => applyKataAnnotations(all, { [`${H}${name}`]: value }, log), want, `${name}=${value}`);
  }
  refusal(
    t,
    () => applyKataAnnotations(all, { [`${R}internetworking_model`]: 'bridged' }, log),
    /not tcfilter, macvtap or none/,
    'runtime model',
  );
  refusal(
    t,
    () => applyKataAnnotations(all, { [`${H}default_vcpus`]: '9' }, log),
    /9 vCPUs exceed default_maxvcpus \(8\)/,
    'beyond maxvcpus',
  );
  refusal(
    t,
    () => applyKataAnnotations(all, { [`${H}default_memory`]: '8192' }, log),
    /8192 MiB exceed the memory maximum \(4096 MiB\)/,
    'beyond max memory',
  );
  t.equal(
    applyKataAnnotations(all, { [`${H}default_max_vcpus`]: '16', [`${H}default_vcpus`]: '12' }, log).hypervisor.vcpus,
    12,
    'a raised maximum counts',
  );
});

t.test('host binaries and paths are refused even when enabled; names not applied here are warned about', async (t) => {
  const { log, lines } = capturingLogger();
  const all = base(['.*']);
  for (const name of ['path', 'jailer_path', 'virtio_fs_daemon', 'entropy_source']) {
    refusal(t, () => applyKataAnnotations(all, { [`${H}${name}`]: '/tmp/evil' }, log), /chooses a host binary or path/, name);
  }
  const c = applyKataAnnotations(
    all,
    { [`${H}firmware`]: '/x', 'io.katacontainers.config.agent.enable_tracing': 'true', [`${R}experimental`]: 'x' },
    log,
  );
  t.equal(c.hypervisor.vcpus, 1, 'nothing changed');
  t.equal(lines.filter((l) => l.level === 40 && /not applied by this runtime/.test(String(l.msg))).length, 3, 'a warning for each');
});

/**
 * Kata's per-pod annotations through a real containerd: `ctr run --annotation
 * io.katacontainers.config.hypervisor.default_memory=...` with the name in the file's
 * enable_annotations gives the VM that memory and the extra kernel parameters (read in the
 * container: /proc/meminfo and /proc/cmdline are the guest kernel's); a name that is not enabled
 * fails the run with the annotation named, and nothing is left.
 */
import t from 'tap';
import { containerdUnavailable } from '../cni/helpers/containerd.js';
import { guestKitOrSkip } from '../helpers/runtime-core.js';
import { ctrRig, IMG, nothingLeft } from './helpers/ctr-rig.js';

const { skip: noKit } = await guestKitOrSkip();
const skip = containerdUnavailable() ?? noKit;
const H = 'io.katacontainers.config.hypervisor.';

t.test('enabled annotations size the VM and add kernel parameters; one not enabled is refused', { skip }, async (t) => {
  const r = await ctrRig(t, { toml: '[hypervisor.qemu]\nenable_annotations = ["default_memory", "kernel_params"]\n' });
  const sized = await r.c.ctr(
    [
      ...r.run,
      '--rm',
      '--annotation',
      `${H}default_memory=768`,
      '--annotation',
      `${H}kernel_params=krt.annotated=1`,
      IMG,
      'ann1',
      'sh',
      '-c',
      "grep MemTotal /proc/meminfo; tr ' ' '\\n' < /proc/cmdline | grep '^krt\\.'",
    ],
    { reject: false },
  );
  t.equal(sized.exitCode, 0, `ctr run: ${sized.stderr}`);
  const kib = Number(/MemTotal:\s+(\d+) kB/.exec(sized.stdout)?.[1] ?? 0);
  // The guest kernel keeps some for itself: MemTotal is a little under what the VM has.
  t.ok(kib > 600 * 1024 && kib <= 768 * 1024, `the guest has about 768 MiB (MemTotal ${kib} kB)`);
  t.match(sized.stdout, /^krt\.annotated=1$/m, 'the annotation kernel parameter reached the guest kernel');

  const refused = await r.c.ctr([...r.run, '--rm', '--annotation', `${H}default_vcpus=2`, IMG, 'ann2', 'true'], { reject: false });
  t.not(refused.exitCode, 0, 'a hypervisor annotation that is not enabled fails the run');
  t.match(refused.stderr, /io\.katacontainers\.config\.hypervisor\.default_vcpus: not enabled: add "default_vcpus" to enable_annotations/);
  await r.c.ctr(['container', 'rm', 'ann2'], { reject: false });
  await nothingLeft(t, r);
});

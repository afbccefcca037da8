import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CAPABILITIES, type HypervisorCapabilities } from '../../../runtime-core/hypervisor/capabilities.js';
import { checkRules } from '../../../runtime-core/config/rules.js';
import { parseConfig } from '../../../runtime-core/config/load-config.js';

// dist/test/runtime-core/hypervisor -> the repository's copies (test/fixtures/anchors, with provenance).
const ANCHORS = join(import.meta.dirname, '..', '..', '..', '..', 'test', 'fixtures', 'anchors');

t.test('each Cloud Hypervisor / Firecracker capability is backed by text of the published API', async (t) => {
  for (const caps of Object.values(CAPABILITIES)) {
    if (!caps.source) continue;
    const api = readFileSync(join(ANCHORS, caps.source), 'utf8');
    for (const [cap, texts] of Object.entries(caps.evidence ?? {})) {
      for (const text of texts as string[]) t.ok(api.includes(text), `${caps.kind}.${cap}: "${text}" is in ${caps.source}`);
    }
  }
  // The negative rows: Firecracker creates NICs and drives before boot only.
  const fc = readFileSync(join(ANCHORS, 'firecracker.yaml'), 'utf8');
  t.match(fc, /Creates a network interface\. Pre-boot only\./);
  t.equal(CAPABILITIES.firecracker.netHotplug, false);
  t.equal(CAPABILITIES.firecracker.blockHotplug, false);
  t.notMatch(fc, /vhost-user-fs|virtio-fs|\/fs\b/i, 'no shared filesystem device in the Firecracker API');
  t.equal(CAPABILITIES.firecracker.vhostUserFs, false);
});

t.test('only QEMU has a driver; every row names its kind', async (t) => {
  t.same(
    Object.values(CAPABILITIES)
      .filter((c) => c.driver)
      .map((c) => c.kind),
    ['qemu'],
  );
  for (const [k, c] of Object.entries(CAPABILITIES)) t.equal(c.kind, k);
});

t.test('config validation refuses what the chosen hypervisor cannot do', async (t) => {
  const cfg = parseConfig('[hypervisor.qemu]\nnetwork_queues = 4\n[runtime]\ninternetworking_model = "macvtap"\n', '/x/c.toml', {
    checkFiles: false,
  });
  t.same(checkRules(cfg), [], 'QEMU can do all of it');
  const fc: HypervisorCapabilities = CAPABILITIES.firecracker;
  const keys = checkRules(cfg, fc)
    .map((p) => p.key)
    .sort();
  // The default NVDIMM image (disable_image_nvdimm = false, as in Kata) is refused too: Firecracker has no NVDIMM.
  t.same(keys, [
    'hypervisor',
    'hypervisor.qemu.block_device_driver',
    'hypervisor.qemu.disable_image_nvdimm',
    'hypervisor.qemu.network_queues',
    'hypervisor.qemu.shared_fs',
    'runtime.internetworking_model',
  ]);
  const clh = checkRules(
    { ...cfg, hypervisor: { ...cfg.hypervisor, disableImageNvdimm: false, blockDeviceDriver: 'virtio-scsi' } },
    CAPABILITIES['cloud-hypervisor'],
  );
  t.same(clh.map((p) => p.key).sort(), ['hypervisor', 'hypervisor.qemu.block_device_driver', 'hypervisor.qemu.disable_image_nvdimm']);
  t.match(clh.find((p) => p.key === 'hypervisor.qemu.disable_image_nvdimm')!.message, /cloud-hypervisor does not support/);
});

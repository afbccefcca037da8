import t from 'tap';
import { hostCores, hostMemoryMiB } from '../../../runtime-core/config/defaults.js';
import { parseConfig } from '../../../runtime-core/config/load-config.js';
import { capturingLogger } from '../../helpers/runtime-core.js';

const FILE = '/etc/krt/c.toml';

function load(toml: string) {
  const { log, lines } = capturingLogger();
  const cfg = parseConfig(toml, FILE, { log, checkFiles: false });
  return { cfg, notes: lines.filter((l) => l.level === 40).map((l) => l.msg) };
}

t.test('fractional default_vcpus: the VM gets the next whole number, with a note', async (t) => {
  const half = load('[hypervisor.qemu]\ndefault_vcpus = 0.5\n');
  t.equal(half.cfg.hypervisor.vcpus, 1);
  t.match(half.notes.join('\n'), /default_vcpus is 0\.5: the VM gets 1 vCPUs/);
  const more = load('[hypervisor.qemu]\ndefault_vcpus = 1.5\ndefault_maxvcpus = 2\n');
  t.equal(more.cfg.hypervisor.vcpus, Math.min(2, hostCores()));
});

t.test('values Kata clamps are clamped, each with a note naming the key', async (t) => {
  const c = load('[hypervisor.qemu]\ndefault_vcpus = 300\ndefault_maxvcpus = 300\npcie_root_port = 20\ndefault_maxmemory = 99999999\n');
  t.equal(c.cfg.hypervisor.vcpus, hostCores(), "vCPUs above the host's become the host's");
  t.equal(c.cfg.hypervisor.maxVcpus, hostCores());
  t.equal(c.cfg.hypervisor.pcieRootPorts, 16, "Kata's maximum of root ports");
  t.equal(c.cfg.hypervisor.maxMemoryMiB, hostMemoryMiB());
  const all = c.notes.join('\n');
  t.match(all, /hypervisor\.qemu\.default_vcpus is 300, outside/);
  t.match(all, /hypervisor\.qemu\.default_maxvcpus is 300, more than the host/);
  t.match(all, /hypervisor\.qemu\.pcie_root_port is 20; using 16/);
  t.match(all, /hypervisor\.qemu\.default_maxmemory is 99999999 MiB/);
});

t.test('zero and too-small values mean the default, as in Kata', async (t) => {
  const c = load('[hypervisor.qemu]\ndefault_vcpus = 0\ndefault_memory = 32\nmemory_slots = 0\n[agent.kata]\ndial_timeout = 0\n');
  t.equal(c.cfg.hypervisor.vcpus, 1);
  t.equal(c.cfg.hypervisor.memoryMiB, 512, "below Kata's 256 MiB minimum: the default");
  t.equal(c.cfg.hypervisor.memorySlots, 10);
  t.equal(c.cfg.agent.dialTimeoutMs, 45_000);
  t.match(c.notes.join('\n'), /default_memory is 32 MiB, below Kata's minimum of 256/);
  t.match(c.notes.join('\n'), /dial_timeout is 0; using the default 45 s/);
});

t.test('cpu_features is trimmed as Kata trims it; empty entropy_source is the default', async (t) => {
  const c = load('[hypervisor.qemu]\ncpu_features = " pmu=off , ,+x2apic "\nentropy_source = ""\n');
  t.equal(c.cfg.hypervisor.cpuFeatures, 'pmu=off,+x2apic');
  t.equal(c.cfg.hypervisor.entropySource, '/dev/urandom');
});

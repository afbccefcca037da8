import t from 'tap';
import { notApplied } from '../../../runtime-core/config/kata-keys.js';
import { appliedKeys } from '../../../runtime-core/config/keys.js';
import { parseConfig, parseConfigReport } from '../../../runtime-core/config/load-config.js';
import { capturingLogger } from '../../helpers/runtime-core.js';
import { kataGoKeys, renderKataTemplateLocal } from '../../helpers/kata-config.js';

const FILE = '/etc/krt/configuration.toml';
const warnings = (lines: { level: number; msg: string }[]) => lines.filter((l) => l.level === 40);

t.test("every key of Kata's Go configuration is applied here or has a reason (never a typo)", async (t) => {
  const applied = new Set(appliedKeys());
  const keys = kataGoKeys();
  let n = 0;
  for (const [table, names] of Object.entries(keys)) {
    for (const k of names) {
      n++;
      const known = applied.has(`${table}.${k}`) || notApplied(table, k) !== undefined;
      t.ok(known, `${table}.${k}`);
    }
  }
  t.equal(n, 131, "config.go's hypervisor, agent, runtime and factory structs have 131 keys");
});

t.test("Kata's rendered QEMU template loads with one compact line and no unknown key", async (t) => {
  const { log, lines } = capturingLogger();
  const text = renderKataTemplateLocal({ kernel: '/boot/krt-vmlinux', rootfs: '/boot/krt-rootfs.ext4' });
  const r = parseConfigReport(text, FILE, { log, checkFiles: false });
  const w = warnings(lines);
  t.equal(w.length, 1, `one warning line (${w.map((l) => l.msg).join(' | ')})`);
  t.match(w[0]!.msg, /^\/etc\/krt\/configuration\.toml: \d+ Kata setting\(s\) have no effect here: /);
  t.match(
    w[0]!.msg,
    /have no effect here: all at values that change nothing here \(kata-resources env lists each with its reason\)$/,
    "at Kata's defaults every such setting is at a value that changes nothing: counted, not listed",
  );
  t.equal(r.ignored.filter((i) => i.reason === undefined).length, 0, 'no key called unknown');
  t.ok(r.ignored.length > 50, `${r.ignored.length} Kata keys have no effect here, each with a reason`);
  t.equal(r.config.hypervisor.memoryMiB, 2048, "Kata's default_memory takes effect");
  t.equal(r.config.hypervisor.cpuFeatures, 'pmu=off', 'and cpu_features');
  t.same(r.config.hypervisor.enableAnnotations, ['enable_iommu', 'kernel_params', 'kernel_verity_params'], 'and enable_annotations');
  t.equal(r.config.hypervisor.blockDeviceDriver, 'virtio-scsi');
  t.same(r.config.hypervisor.virtioFsExtraArgs, ['--thread-pool-size=1', '--announce-submounts'], 'extra args kept (respelled at start)');
});

t.test('Kata keys outside the template are known too; a setting that would matter is named', async (t) => {
  const { log, lines } = capturingLogger();
  parseConfig(
    '[hypervisor.qemu]\npcie_switch_port = 2\nconfidential_guest = false\njailer_path = ""\nhot_plug_vfio = "root-port"\n[agent.kata]\nlaunch_process_timeout = 6\n[runtime]\nexperimental_force_guest_pull = false\n',
    FILE,
    { log, checkFiles: false },
  );
  const w = warnings(lines);
  t.equal(w.length, 1, 'one line');
  t.match(w[0]!.msg, /^\/etc\/krt\/configuration\.toml: 6 Kata setting\(s\)/);
  t.match(
    w[0]!.msg,
    /hypervisor\.qemu\.pcie_switch_port = 2, hypervisor\.qemu\.hot_plug_vfio = "root-port" \(VFIO passthrough is not supported\)/,
  );
  t.match(w[0]!.msg, /4 more at values that change nothing here/);
  t.notMatch(w[0]!.msg, /unknown/);
});

t.test('unknown keys are one line naming each; the file still loads', async (t) => {
  const { log, lines } = capturingLogger();
  const cfg = parseConfig(
    '[hypervisor.qemu]\ndefault_memroy = 1024\nfoo = "bar"\n[runtime]\nsome_new_flag = true\n[mystery]\nx = 1\n',
    FILE,
    {
      log,
      checkFiles: false,
    },
  );
  t.equal(cfg.hypervisor.memoryMiB, 512, 'the misspelt key changed nothing');
  const w = warnings(lines) as unknown as { msg: string; keys: string[]; file: string }[];
  t.equal(w.length, 1, 'one line');
  t.same([...w[0]!.keys].sort(), ['hypervisor.qemu.default_memroy', 'hypervisor.qemu.foo', 'mystery', 'runtime.some_new_flag']);
  t.equal(w[0]!.file, FILE);
  t.match(w[0]!.msg, /unknown key\(s\) .*default_memroy.*; ignored \(neither this runtime nor Kata has them: a typo\?\)/);
});

t.test('[factory] is reported as Kata settings without effect, with its reason', async (t) => {
  const { log, lines } = capturingLogger();
  parseConfig('[factory]\nenable_template = true\ntemplate_path = "/run/vc/vm/template"\nvm_cache_number = 0\n', FILE, {
    log,
    checkFiles: false,
  });
  const w = warnings(lines);
  t.equal(w.length, 1);
  t.match(w[0]!.msg, /factory\.enable_template = true \(VM templating and caching/, 'the switch that would matter is named');
  t.match(w[0]!.msg, /2 more at values that change nothing/, 'template_path only matters with it; vm_cache_number = 0 is off');
});

t.test('report: false keeps it quiet (the supervisor loads a file the CLI reported on)', async (t) => {
  const { log, lines } = capturingLogger();
  parseConfig('[hypervisor.qemu]\nrootless = true\nfoo = 1\n', FILE, { log, checkFiles: false, report: false });
  t.same(warnings(lines), []);
});

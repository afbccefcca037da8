import t from 'tap';
import { parseConfig } from '../../../runtime-core/config/load-config.js';
import { capturingLogger } from '../../helpers/runtime-core.js';

const FILE = '/etc/krt/configuration.toml';

t.test('an unknown key gives one warning naming file and key, and the file still loads', async (t) => {
  const { log, lines } = capturingLogger();
  const cfg = parseConfig(
    '[hypervisor.qemu]\ndefault_memroy = 1024\nfoo = "bar"\n[runtime]\nsome_new_flag = true\n[mystery]\nx = 1\n',
    FILE,
    { log, checkFiles: false },
  );
  t.equal(cfg.hypervisor.memoryMiB, 512, 'the misspelt key changed nothing');
  const warns = lines.filter((l) => l.level === 40);
  t.same(warns.map((w) => w.key).sort(), ['hypervisor.qemu.default_memroy', 'hypervisor.qemu.foo', 'mystery', 'runtime.some_new_flag']);
  for (const w of warns) {
    t.equal(w.file, FILE);
    t.match(w.msg, new RegExp(`^${FILE}: unknown key ${w.key!.replace(/\./g, '\\.')}; ignored`));
  }
});

t.test('Kata settings this runtime does not use are named as such, not as typos', async (t) => {
  const { log, lines } = capturingLogger();
  parseConfig(
    '[hypervisor.qemu]\nrootless = false\nenable_iothreads = false\n[agent.kata]\nkernel_modules = []\n[runtime]\nenable_pprof = false\n',
    FILE,
    { log, checkFiles: false },
  );
  const warns = lines.filter((l) => l.level === 40);
  t.equal(warns.length, 4);
  for (const w of warns) t.match(w.msg, /is a Kata setting this runtime does not use; ignored/);
});

t.test('[factory] is ignored with one warning, whatever it holds', async (t) => {
  const { log, lines } = capturingLogger();
  const cfg = parseConfig('[factory]\nenable_template = true\ntemplate_path = "/run/vc/vm/template"\nvm_cache_number = 3\n', FILE, {
    log,
    checkFiles: false,
  });
  t.ok(cfg);
  const warns = lines.filter((l) => l.level === 40);
  t.equal(warns.length, 1);
  t.equal(warns[0]!.key, 'factory');
  t.match(warns[0]!.msg, /\[factory\].*not supported.*ignored/);
});

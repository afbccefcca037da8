import t from 'tap';
import { existsSync } from 'node:fs';
import { isKataError } from '../../../host/errors.js';
import { DEFAULT_CONFIG_PATHS } from '../../../runtime-core/config/defaults.js';
import { loadConfig, parseConfig } from '../../../runtime-core/config/load-config.js';
import { tempDir, writeFile } from '../../helpers/runtime-core.js';

const hostConfig = DEFAULT_CONFIG_PATHS.find((p) => existsSync(p));

t.test(
  'with no file at all the built-in defaults are a valid configuration',
  { skip: hostConfig ? `a host configuration exists at ${hostConfig}` : false },
  async (t) => {
    const saved = process.env.KATA_RESOURCES_CONFIG;
    const savedKata = process.env.KATA_CONF_FILE;
    delete process.env.KATA_RESOURCES_CONFIG;
    delete process.env.KATA_CONF_FILE;
    t.teardown(() => {
      if (saved !== undefined) process.env.KATA_RESOURCES_CONFIG = saved;
      if (savedKata !== undefined) process.env.KATA_CONF_FILE = savedKata;
    });
    const cfg = loadConfig();
    t.equal(cfg.source, undefined);
    t.equal(cfg.hypervisor.kernel, undefined, 'kernel left to the embedded guest kit');
    t.equal(cfg.hypervisor.initrd, undefined);
    t.equal(cfg.hypervisor.image, undefined);
    t.equal(cfg.hypervisor.accel, 'auto');
    t.equal(cfg.hypervisor.sharedFs, 'virtio-fs');
    t.equal(cfg.hypervisor.blockDeviceDriver, 'virtio-blk');
    t.ok(cfg.hypervisor.pcieRootPorts > 0, 'root ports for hotplug');
    t.equal(cfg.runtime.internetworkingModel, 'tcfilter');
    t.equal(cfg.runtime.stateDir, '/run/kata-resources');
    t.equal(cfg.agent.dialTimeoutMs, 45_000);
  },
);

t.test('an empty file gives the same values as no file', async (t) => {
  const fromEmpty = parseConfig('', '/x/empty.toml');
  const fromNone = parseConfig('# nothing\n', '/x/comment.toml');
  t.same({ ...fromEmpty, source: undefined }, { ...fromNone, source: undefined });
  t.equal(fromEmpty.hypervisor.memoryMiB, 512);
});

t.test('KATA_RESOURCES_CONFIG names the file when none is given', async (t) => {
  const dir = tempDir(t);
  const file = writeFile(dir, 'c.toml', '[hypervisor.qemu]\ndefault_memory = 768\n');
  const saved = process.env.KATA_RESOURCES_CONFIG;
  process.env.KATA_RESOURCES_CONFIG = file;
  t.teardown(() => {
    if (saved === undefined) delete process.env.KATA_RESOURCES_CONFIG;
    else process.env.KATA_RESOURCES_CONFIG = saved;
  });
  const cfg = loadConfig();
  t.equal(cfg.source, file);
  t.equal(cfg.hypervisor.memoryMiB, 768);
});

t.test("KATA_CONF_FILE (Kata's variable) names the file too; KATA_RESOURCES_CONFIG wins over it", async (t) => {
  const dir = tempDir(t);
  const kata = writeFile(dir, 'kata.toml', '[hypervisor.qemu]\ndefault_memory = 640\n');
  const ours = writeFile(dir, 'ours.toml', '[hypervisor.qemu]\ndefault_memory = 896\n');
  const saved = { r: process.env.KATA_RESOURCES_CONFIG, k: process.env.KATA_CONF_FILE };
  t.teardown(() => {
    for (const [name, v] of [
      ['KATA_RESOURCES_CONFIG', saved.r],
      ['KATA_CONF_FILE', saved.k],
    ] as const) {
      if (v === undefined) delete process.env[name];
      else process.env[name] = v;
    }
  });
  delete process.env.KATA_RESOURCES_CONFIG;
  process.env.KATA_CONF_FILE = kata;
  t.equal(loadConfig().hypervisor.memoryMiB, 640, 'KATA_CONF_FILE alone');
  process.env.KATA_RESOURCES_CONFIG = ours;
  t.equal(loadConfig().hypervisor.memoryMiB, 896, 'KATA_RESOURCES_CONFIG first');
});

t.test('a named file that does not exist is E_CONFIG naming it', async (t) => {
  t.throws(() => loadConfig('/nonexistent/krt-config.toml'), {
    code: 'E_CONFIG',
    message: /^\/nonexistent\/krt-config\.toml: cannot read the configuration file: ENOENT/,
  });
});

t.test('a TOML syntax error is E_CONFIG with file, line and column', async (t) => {
  const dir = tempDir(t);
  const file = writeFile(dir, 'bad.toml', '[hypervisor.qemu]\ndefault_memory = 512\nkernel_params = "unterminated\n');
  try {
    loadConfig(file);
    t.fail('accepted');
  } catch (e) {
    t.ok(isKataError(e, 'E_CONFIG'));
    t.match((e as Error).message, new RegExp(`^${file.replace(/[.]/g, '\\.')}:3:\\d+: TOML syntax error`));
    t.equal((e as { details: { line: number } }).details.line, 3);
  }
});

/**
 * `env`, `version`/`--version` and `--show-default-config-paths` through the real CLI, on Kata's
 * rendered QEMU template (paths to local files). No VM.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'smol-toml';
import { run } from '../../../host/exec.js';
import { loadConfig } from '../../../runtime-core/config/load-config.js';
import { renderKataTemplateLocal } from '../../helpers/kata-config.js';
import { tempDir } from '../../helpers/runtime-core.js';
import { cli, explain, parseJson } from '../../helpers/sandbox.js';

interface Env {
  runtime: { version: string; commit: string; config: { file: string; chosenBy: string; defaultPaths: string[] } };
  configuration: Record<string, Record<string, unknown>>;
  origins: Record<string, string>;
  notApplied: { key: string; reason: string; changesNothing: boolean }[];
  unknown: string[];
  hypervisor: { version: string };
  host: { cpus: number };
}

function kataFile(dir: string): string {
  const kernel = join(dir, 'vmlinux');
  const rootfs = join(dir, 'rootfs.ext4');
  writeFileSync(kernel, 'k');
  writeFileSync(rootfs, 'r');
  const file = join(dir, 'configuration.toml');
  writeFileSync(file, `${renderKataTemplateLocal({ kernel, rootfs })}\n`);
  return file;
}

t.test('env --json: the effective configuration round-trips through TOML; origins and reasons are there', async (t) => {
  const dir = tempDir(t, 'env');
  const file = kataFile(dir);
  const r = await cli(['env', '--config', file, '--json']);
  t.equal(r.code, 0, explain(r));
  t.equal(r.stdout.trim().split('\n').length, 1, 'one JSON object on one line');
  const e = parseJson<Env>(r);
  t.equal(e.runtime.config.file, file);
  t.equal(e.runtime.config.chosenBy, 'option');
  t.equal(e.origins['hypervisor.qemu.default_memory'], 'file', 'default_memory came from the file');
  t.equal(e.origins['hypervisor.qemu.network_queues'], 'default', 'network_queues (not in Kata) is a default');
  t.same(e.unknown, [], 'no unknown key');
  t.ok(
    e.notApplied.some((n) => n.key === 'hypervisor.qemu.rootless' && /QEMU runs as root/.test(n.reason)),
    'each Kata key without effect has its reason',
  );
  t.match(e.hypervisor.version, /QEMU emulator version/);

  const back = join(dir, 'effective.toml');
  writeFileSync(back, stringify(e.configuration));
  const original = loadConfig(file, { checkFiles: false });
  const again = loadConfig(back, { checkFiles: false });
  t.same({ ...again, source: undefined }, { ...original, source: undefined }, 'written back as TOML it loads to the same configuration');

  const text = await cli(['env', '--config', file]);
  t.equal(text.code, 0);
  const { parse } = await import('smol-toml');
  const parsed = parse(text.stdout) as unknown as Env;
  t.equal(
    parsed.configuration.hypervisor!.qemu && (parsed.configuration.hypervisor!.qemu as Record<string, unknown>).default_memory,
    2048,
    'without --json: TOML, as kata-runtime env prints',
  );
});

t.test('KATA_CONF_FILE is honoured by every command, as Kata users set it', async (t) => {
  const dir = tempDir(t, 'env');
  const file = kataFile(dir);
  const r = await cli(['env', '--json'], { env: { KATA_CONF_FILE: file } });
  t.equal(r.code, 0, explain(r));
  const e = parseJson<Env>(r);
  t.equal(e.runtime.config.file, file);
  t.equal(e.runtime.config.chosenBy, 'KATA_CONF_FILE');
});

t.test('--version and version name the version and the commit; --show-default-config-paths lists the paths', async (t) => {
  const v = await cli(['--version']);
  t.equal(v.code, 0);
  const m = /^kata-resources (\d+\.\d+\.\d+) \(commit ([0-9a-f]{40}|unknown)/.exec(v.stdout);
  t.ok(m, `version line: ${v.stdout}`);
  if (m && m[2] !== 'unknown') {
    const known = await run('git', ['cat-file', '-e', `${m[2]}^{commit}`], { reject: false });
    t.equal(known.exitCode, 0, 'the commit is one of this repository');
  }
  const w = await cli(['version', '--json']);
  t.equal(w.code, 0);
  const j = parseJson<{ version: string; commit: string }>(w);
  t.equal(j.version, m?.[1]);
  t.equal(j.commit, m?.[2]);
  const p = await cli(['--show-default-config-paths']);
  t.equal(p.code, 0);
  t.same(p.stdout.trim().split('\n'), ['/etc/kata-resources/configuration.toml', '/usr/share/defaults/kata-resources/configuration.toml']);
});

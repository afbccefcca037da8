/**
 * A bad configuration file given to the real CLI: each invalid key or type (wrong type, out of
 * range, unknown enum value, a TOML syntax error, disable_new_netns without model "none", a
 * missing binary) makes `sandbox up` exit 1 with E_CONFIG naming the file and the key (for a syntax
 * error: the line), and nothing starts: no supervisor or other process, no namespace, no state.
 * No VM boot.
 */
import t from 'tap';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli, parseJson, processesMentioning } from '../../helpers/sandbox.js';

interface Case {
  name: string;
  /** TOML tables (without state_dir, which every file gets in [runtime]) or a raw text. */
  tables?: Record<string, string[]>;
  raw?: string;
  /** What the message must name after "<file>: " or "<file>:<line>:". */
  keys: string[];
  expect: RegExp;
  /** Expected "<file>:<line>:" prefix instead of "<file>: ". */
  line?: number;
  /** Found by the preflight of `up` (what the daemons would refuse), not by loading the file. */
  preflight?: true;
}

const CASES: Case[] = [
  {
    name: 'wrong type',
    tables: { 'hypervisor.qemu': ['default_memory = "lots"'] },
    keys: ['hypervisor.qemu.default_memory'],
    expect: /must be an integer/,
  },
  {
    name: 'wrong type (boolean)',
    tables: { runtime: ['disable_new_netns = "yes"'] },
    keys: ['runtime.disable_new_netns'],
    expect: /must be a boolean/,
  },
  {
    name: 'out of range',
    tables: { 'hypervisor.qemu': ['default_memory = -5'] },
    keys: ['hypervisor.qemu.default_memory'],
    expect: /from 0 to 16777216/,
  },
  {
    name: 'out of range (agent)',
    tables: { 'agent.kata': ['dial_timeout = 7200'] },
    keys: ['agent.kata.dial_timeout'],
    expect: /from 0 to 3600/,
  },
  {
    name: 'unknown enum value',
    tables: { runtime: ['internetworking_model = "bridged"'] },
    keys: ['runtime.internetworking_model'],
    expect: /one of "tcfilter", "macvtap", "none"/,
  },
  {
    name: 'disable_new_netns without model none',
    tables: { runtime: ['disable_new_netns = true'] },
    keys: ['runtime.disable_new_netns'],
    expect: /internetworking_model = "none"/,
  },
  {
    name: 'missing binary',
    tables: { 'hypervisor.qemu': ['path = "/no/such/qemu-system-x86_64"'] },
    keys: ['hypervisor.qemu.path'],
    expect: /not an executable/,
  },
  {
    name: 'two problems at once',
    tables: { 'hypervisor.qemu': ['default_memory = -16', 'shared_fs = "virtio-9p"'] },
    keys: ['hypervisor.qemu.default_memory', 'hypervisor.qemu.shared_fs'],
    expect: /from 0 to[\s\S]*one of "virtio-fs", "none"/,
  },
  {
    name: 'a cache mode the C virtiofsd does not have (found before anything starts)',
    tables: { 'hypervisor.qemu': ['virtio_fs_cache = "metadata"'] },
    keys: ['hypervisor.qemu.virtio_fs_cache'],
    expect: /metadata is not supported by the C virtiofsd/,
    preflight: true,
  },
  {
    name: 'an entropy source that is not a device',
    tables: { 'hypervisor.qemu': ['entropy_source = "/etc/hostname"'] },
    keys: ['hypervisor.qemu.entropy_source'],
    expect: /not a character device/,
    preflight: true,
  },
  { name: 'TOML syntax error', raw: '[hypervisor.qemu]\ndefault_memory = 2048 MiB\n', keys: [], expect: /TOML syntax error/, line: 2 },
];

function toml(c: Case, stateDir: string): string {
  // The raw text first, so a syntax error keeps its line number.
  if (c.raw !== undefined) return `${c.raw}\n[runtime]\nstate_dir = "${stateDir}"\n`;
  const tables = { ...c.tables };
  tables.runtime = [...(tables.runtime ?? []), `state_dir = "${stateDir}"`];
  return Object.entries(tables)
    .map(([k, v]) => `[${k}]\n${v.join('\n')}\n`)
    .join('\n');
}

t.test('each bad configuration: exit 1, E_CONFIG naming file and key, nothing starts', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'krt-badcfg-'));
  t.teardown(() => {
    for (const p of processesMentioning(dir)) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });
  for (const [i, c] of CASES.entries()) {
    await t.test(c.name, async (t) => {
      const stateDir = join(dir, `state${i}`);
      const file = join(dir, `bad${i}.toml`);
      writeFileSync(file, toml(c, stateDir));
      const id = `krt-bad${i}-${process.pid}`;
      const r = await cli(['sandbox', 'up', '--id', id, '--config', file, '--json'], { timeoutMs: 60_000 });
      t.equal(r.code, 1, 'up exits 1');
      const err = parseJson<{ error?: { code: string; message: string } }>(r).error;
      t.equal(err?.code, 'E_CONFIG', 'E_CONFIG');
      const msg = err?.message ?? '';
      if (c.line !== undefined) t.ok(msg.startsWith(`${file}:${c.line}:`), `names the file and the line: ${msg}`);
      else t.ok(msg.startsWith(`${file}: `), `names the file: ${msg}`);
      for (const k of c.keys) t.match(msg, `${k} `, `names the key ${k}`);
      t.match(msg, c.expect, 'says what is expected');
      t.match(r.stderr, `E_CONFIG: ${file}`, 'stderr says it too');

      t.notOk(existsSync(stateDir), 'no state dir was made');
      t.notOk(existsSync(`/run/netns/kr-${id}`), 'no namespace was made');
      t.same(processesMentioning(file), [], 'no supervisor or daemon runs');

      // check --config finds the same problem, by the same rules (a file that passes check boots).
      const chk = await cli(['check', '--config', file, '--json'], { timeoutMs: 120_000 });
      t.equal(chk.code, 1, 'check --config exits 1');
      const items = parseJson<{ name: string; ok: boolean; detail: string }[]>(chk);
      const failed = items.filter((i) => !i.ok && i.name.startsWith('config: '));
      for (const k of c.keys)
        t.ok(
          failed.some((i) => i.name === `config: ${k}` && (c.keys.length > 1 || c.expect.test(i.detail))),
          `check names ${k}${c.keys.length > 1 ? '' : ' and why'}`,
        );
      if (c.keys.length === 0)
        t.ok(
          failed.some((i) => c.expect.test(i.detail)),
          'check says why',
        );

      // The other commands read the same file and fail the same way (nothing to do without a valid config).
      for (const args of c.preflight
        ? []
        : [
            ['sandbox', 'list'],
            ['sandbox', 'status', id],
            ['sandbox', 'down', id],
          ]) {
        const o = await cli([...args, '--config', file, '--json'], { timeoutMs: 60_000 });
        t.equal(o.code, 1, `${args.slice(0, 2).join(' ')} exits 1`);
        t.equal(parseJson<{ error?: { code: string } }>(o).error?.code, 'E_CONFIG', `${args.slice(0, 2).join(' ')}: E_CONFIG`);
      }
      t.notOk(existsSync(stateDir), 'still no state dir');
    });
  }
  t.same(
    readdirSync(dir).filter((f) => !f.endsWith('.toml')),
    [],
    'nothing but the config files in the test dir',
  );
});

t.test('a --config file that does not exist is E_CONFIG naming it', async (t) => {
  const missing = join(tmpdir(), `krt-no-such-config-${process.pid}.toml`);
  const r = await cli(['sandbox', 'up', '--id', `krt-nocfg-${process.pid}`, '--config', missing, '--json']);
  t.equal(r.code, 1, 'exit 1');
  const err = parseJson<{ error?: { code: string; message: string } }>(r).error;
  t.equal(err?.code, 'E_CONFIG');
  t.match(err?.message ?? '', missing, 'names the file');
  t.match(err?.message ?? '', /ENOENT|cannot read/, 'and why');
});

import { spawn } from 'node:child_process';
import { copyFileSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { run } from '../../host/exec.js';
import { tempNetns, vethPair } from '../helpers/netns.js';
import { BOOT_END, readPayload } from '../../cni/build/payload.js';
import { shellLines } from '../../cni/build/shell-boot.js';
import { REPO, tempDir } from './helpers/cni-runtime.js';

/**
 * The shipped plugin is ONE file that runs on its own (copied anywhere, no node_modules), and its
 * static import graph from the entry stops before config validation, logging and the network code,
 * which are reached only through dynamic imports (lazily initialised inside the bundle). The file
 * is a shell script whose last here-document is a small boot, followed by the payload as bytes:
 * the head and its V8 code cache, the plugin's code, its V8 code cache (both caches trained on real
 * calls) and pino's code: this Node accepts the caches, a Node with other V8 flags rejects them and
 * still answers, and a real ADD, CHECK and DEL load neither node:child_process nor node:fs/promises.
 */
const dir = tempDir(t, 'bundle');
const out = join(dir, 'kata-cni.js');
const metaFile = join(dir, 'meta.json');
await run(process.execPath, [join(REPO, 'cni/build/bundle.mjs'), '--outfile', out, '--metafile', metaFile]);
const meta = JSON.parse(readFileSync(metaFile, 'utf8')) as { inputs: Record<string, { imports: { path: string; kind: string }[] }> };

/** The parts of the payload after the boot. */
function payload(file: string): { head: string; headCache: Buffer; body: string; pino: string; cache: Buffer } {
  const p = readPayload(readFileSync(file));
  return { head: p.text('head'), headCache: p.bytes('headcache'), body: p.text('body'), pino: p.text('pino'), cache: p.bytes('cache') };
}

/** A VERSION call of cmd with only PATH (and CNI_COMMAND) in its environment. */
function versionCall(
  cmd: string,
  args: string[],
  path: string,
  version: string,
  cwd?: string,
): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { env: { PATH: path, CNI_COMMAND: 'VERSION' }, cwd });
    let stdout = '';
    c.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    c.on('error', reject);
    c.on('close', (code) => resolve({ code, stdout }));
    c.stdin.end(JSON.stringify({ cniVersion: version }));
  });
}

t.test('the static import graph of the entry holds no network, validation or logging code', async (t) => {
  const seen = new Set<string>();
  const stack = ['cni/main.ts'];
  while (stack.length > 0) {
    const f = stack.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    for (const i of meta.inputs[f]?.imports ?? []) {
      if (i.kind !== 'dynamic-import' && meta.inputs[i.path]) stack.push(i.path);
    }
  }
  const eager = [...seen].sort();
  t.ok(eager.includes('cni/version.ts') && eager.includes('cni/skel.ts'), `eager: ${eager.join(', ')}`);
  for (const lazy of [
    /^plugins\//,
    /^host\/netlink\.ts$/,
    /^host\/exec\.ts$/,
    /^cni\/config-validator\.ts$/,
    /^cni\/config\.ts$/,
    /^cni\/commands\//,
    /^pino-from-payload:/,
  ]) {
    t.same(
      eager.filter((f) => lazy.test(f)),
      [],
      `${lazy} is only reached through a dynamic import`,
    );
  }
  const all = Object.keys(meta.inputs);
  t.ok(
    all.some((f) => f.startsWith('plugins/network/')),
    'the network code is in the bundle (lazily)',
  );
  t.ok(all.includes('pino-from-payload:pino'), 'pino is in the bundle, as a payload part compiled on first use');
  t.same(
    all.filter((f) => f.includes('node_modules/pino/')),
    [],
    'no pino code parsed at start',
  );
});

t.test('no execa and no ajv compiler in the bundle: the schema is compiled ahead of time', async (t) => {
  const all = Object.keys(meta.inputs);
  t.same(
    all.filter((f) => f.includes('node_modules/execa/')),
    [],
    'no execa (host/exec.ts runs commands with host/execa-lite.ts)',
  );
  t.same(
    all.filter((f) => /node_modules\/ajv\/dist\/(core|compile|vocabularies)\//.test(f)),
    [],
    'no ajv compiler',
  );
  const { head, headCache, body: text, pino, cache } = payload(out);
  t.match(text, /kata-resources\.local\/schemas\/kata-cni-request\.json/, 'the precompiled validator carries the schema id');
  t.notMatch(text, /require\("(node:)?(crypto|tty)"\)/, 'neither node:crypto nor node:tty is loaded by the bundle');
  t.ok(cache.length > 10_000, `a code cache is in the file (${cache.length} bytes)`);
  t.ok(headCache.length > 1_000, `and one for the head (${headCache.length} bytes)`);
  t.match(head, /^\(function \(require\) \{/, 'the head is a function of require, run from the payload');
  t.match(head, /kata-cni\.early-helpers/, 'the head starts the helpers');
  const file = readFileSync(out, 'latin1');
  const lines = `#!/bin/sh\n${shellLines()}`;
  const boot = file.slice(lines.length, file.indexOf(`\n${BOOT_END}\n`));
  t.ok(file.startsWith(lines) && boot.length > 100, `the boot is the here-document after the shell lines (${boot.length} bytes)`);
  t.ok(Buffer.byteLength(boot) <= 4096, 'small enough for dash to write it to its pipe without a fork');
  t.notMatch(boot, /kata-cni\.early-helpers/, 'the boot does not start the helpers');
  t.notMatch(boot, /closeSync\)\(8\)/, 'it leaves fd 8 (its own here-document, close-on-exec) open: a closed fd 8 would be reused');
  t.match(pino, /stdSerializers/, "pino's code travels as a payload part of its own");
  t.notMatch(text, /stdSerializers/, "pino's code is not in the plugin's code");
  t.ok(file.endsWith(pino), "the parts follow the boot as they are: the file ends with pino's code");
  t.ok(readFileSync(out).includes(cache), 'and the code cache is in it as bytes, not encoded');
  t.ok(all.includes('cni/build/crypto-lite.ts'), 'randomBytes comes from cni/build/crypto-lite.ts');
});

t.test('the bundle runs alone, copied anywhere, by any name', async (t) => {
  const st = statSync(out);
  t.ok((st.mode & 0o111) !== 0, 'executable');
  t.ok(readFileSync(out, 'latin1').startsWith(`#!/bin/sh\n${shellLines()}`), 'shell lines first, which exec node from PATH');
  const alone = tempDir(t, 'alone');
  for (const name of ['kata-cni', 'kata-cni.js']) {
    copyFileSync(out, join(alone, name));
    await run('chmod', ['755', join(alone, name)]);
  }
  for (const file of [join(alone, 'kata-cni'), join(alone, 'kata-cni.js')]) {
    const r = await versionCall(file, [], process.env.PATH ?? '', '0.4.0', alone);
    t.equal(r.code, 0, file);
    t.same(
      JSON.parse(r.stdout),
      { cniVersion: '0.4.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] },
      `${file}: VERSION`,
    );
  }
});

t.test("install-cni names this Node in the shell lines' exec (no PATH needed); --env-shebang keeps `node`", async (t) => {
  const bundleText = readFileSync(join(REPO, 'dist/cni/kata-cni.js'), 'latin1');
  const built = `#!/bin/sh\n${shellLines()}`;
  t.ok(bundleText.startsWith(built), 'the bundle starts with the shell lines');
  const tail = ` --v8-pool-size=1 $b "$0" "$@" 8<<'${BOOT_END}'\n`;
  for (const [flags, exec, path] of [
    [[], ` exec '${process.execPath}'${tail}`, ''],
    [['--env-shebang'], ` exec node${tail}`, process.env.PATH ?? ''],
  ] as const) {
    const bin = tempDir(t, 'install');
    await run(process.execPath, [join(REPO, 'cni/build/install.mjs'), '--bin-dir', bin, ...flags]);
    const installed = readFileSync(join(bin, 'kata-cni'), 'latin1');
    const lines = installed.split('\n');
    t.equal(lines[0], '#!/bin/sh', `${flags.join(' ') || 'default'}: first line`);
    t.ok(`${lines[1]}\n`.endsWith(exec), `${flags.join(' ') || 'default'}: the exec names ${exec.trim().split(' ')[1]}`);
    const shell = `#!/bin/sh\n${shellLines(flags.length ? 'node' : `'${process.execPath}'`)}`;
    t.ok(
      installed.startsWith(shell) && installed.slice(shell.length) === bundleText.slice(built.length),
      'everything after the shell lines is the bundle, byte for byte',
    );
    const r = await versionCall(join(bin, 'kata-cni'), [], path, '1.0.0');
    t.equal(r.code, 0, `runs with PATH=${JSON.stringify(path)}`);
    t.match(JSON.parse(r.stdout), { cniVersion: '1.0.0' });
  }
});

t.test('a NODE_OPTIONS with --import or a loader (Node then reads its main script twice) still runs the plugin', async (t) => {
  for (const options of ['', '--import=data:text/javascript,', '--experimental-loader=data:text/javascript,', '--max-old-space-size=300']) {
    const r = await execClean([out], { CNI_COMMAND: 'VERSION', ...(options ? { NODE_OPTIONS: options } : {}) }, '{"cniVersion":"0.4.0"}');
    t.equal(r.code, 0, options || 'no NODE_OPTIONS');
    t.match(JSON.parse(r.stdout || '{}'), { cniVersion: '0.4.0' }, `${options || 'no NODE_OPTIONS'}: VERSION answered`);
  }
});

t.test('a loader that reads the boot again (/dev/fd/8) while an ADD runs gets nothing, and the ADD completes', async (t) => {
  const host = await tempNetns(t, 'bunh');
  const pod = await tempNetns(t, 'bunp');
  await vethPair(pod, host);
  const stateDir = tempDir(t, 'buns');
  // Every 2 ms, as a loader might at any time: read the main script's here-document again. Were fd 8
  // closed by the boot, its number would name a helper's pipe by then, and the read would hang.
  const reader = "import('node:fs').then((fs) => setInterval(() => { try { fs.readFileSync('/dev/fd/8'); } catch {} }, 2).unref());";
  const env = {
    CNI_CONTAINERID: 'krtbun8',
    CNI_NETNS: pod.path,
    CNI_IFNAME: 'eth0',
    NODE_OPTIONS: `--import=data:text/javascript,${encodeURIComponent(reader)}`,
  };
  const cfg = (prev: unknown) => JSON.stringify({ cniVersion: '1.0.0', name: 'krt-bun', type: 'kata-cni', stateDir, prevResult: prev });
  const add = await execClean(
    [out],
    { ...env, CNI_COMMAND: 'ADD' },
    cfg({ cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: pod.path }] }),
  );
  t.equal(add.code, 0, add.stdout + add.stderr);
  const del = await execClean([out], { ...env, CNI_COMMAND: 'DEL' }, cfg(JSON.parse(add.stdout || '{}')));
  t.equal(del.code, 0, del.stdout + del.stderr);
});

t.test('VERSION echoes the input version, or 1.1.0 when there is none', async (t) => {
  for (const [stdin, v] of [
    ['{"cniVersion":"1.0.0"}', '1.0.0'],
    ['', '1.1.0'],
    ['not json', '1.1.0'],
    ['{"cniVersion":"0.2.0"}', '0.2.0'],
  ] as const) {
    const r = await execClean([out], { CNI_COMMAND: 'VERSION' }, stdin);
    t.equal(r.code, 0);
    t.equal((JSON.parse(r.stdout) as { cniVersion: string }).cniVersion, v, JSON.stringify(stdin));
    t.equal(r.stdout.trim().split('\n').length, 1, 'one line');
  }
});

t.test('without CNI_COMMAND it says what it is on stderr and succeeds, stdout empty (as libcni skel)', async (t) => {
  const r = await execClean([out], {}, '');
  t.equal(r.code, 0);
  t.equal(r.stdout, '');
  t.match(r.stderr, /CNI protocol versions supported: 0\.3\.0, 0\.3\.1, 0\.4\.0, 1\.0\.0, 1\.1\.0/);
});

t.test('logs only when configured: with logLevel, pino JSON lines on stderr and stdout keeps only the result', async (t) => {
  const cfg = JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'kata-cni', stateDir: dir });
  const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/run/netns/krt-none', CNI_IFNAME: 'eth0' };
  const quiet = await execClean([out], env, cfg);
  t.equal(quiet.stderr, '', 'not configured: nothing on stderr');
  const loud = await execClean([out], { ...env, KATA_CNI_LOG_LEVEL: 'error' }, cfg);
  t.equal(loud.stdout, quiet.stdout, 'stdout is the same error result');
  const line = JSON.parse(loud.stderr.trim().split('\n')[0]!) as Record<string, unknown>;
  t.match(line, { level: 50, plugin: 'kata-cni', command: 'ADD', containerId: 'c1', code: 7, msg: /prevResult/ }, 'a pino error line');
});

/**
 * Run the plugin with exactly this environment. tap's process tracking hooks spawn and adds
 * NODE_OPTIONS (loaders that require node:child_process and node:crypto) to every child's
 * environment; `env -i` clears it, so the call measured is the plugin alone.
 */
function execClean(
  args: string[],
  env: Record<string, string>,
  stdin: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const vars = Object.entries({ PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...env }).map(([k, v]) => `${k}=${v}`);
  return new Promise((resolve, reject) => {
    const c = spawn('/usr/bin/env', ['-i', ...vars, ...args], { cwd: dir });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    c.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    // A call that hangs fails its test, as a runtime would kill it, instead of the whole file.
    const timer = setTimeout(() => c.kill('SIGKILL'), 30_000);
    c.on('error', reject);
    c.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    c.stdin.end(stdin);
  });
}

/** The kata-cni-timing line of a call run with KATA_CNI_TIMING=1. */
function timing(stderr: string): Record<string, number> {
  const m = /^kata-cni-timing (.*)$/m.exec(stderr);
  return m?.[1] ? (JSON.parse(m[1]) as Record<string, number>) : {};
}

t.test('this Node accepts the code cache; a Node with other V8 flags rejects it and still answers', async (t) => {
  // Node's options come from NODE_OPTIONS: the shell lines exec Node themselves.
  const run1 = (flags: string[]) =>
    execClean(
      [out],
      { CNI_COMMAND: 'VERSION', KATA_CNI_TIMING: '1', ...(flags.length ? { NODE_OPTIONS: flags.join(' ') } : {}) },
      '{"cniVersion":"1.0.0"}',
    );
  const plain = await run1([]);
  t.equal(plain.code, 0);
  t.type(timing(plain.stderr)['compiled-from-cache'], 'number', 'compiled from the code cache');
  t.type(timing(plain.stderr)['head-compiled-from-cache'], 'number', 'the head too');
  const other = await run1(['--max-old-space-size=200']);
  t.equal(other.code, 0, 'still works');
  t.equal(JSON.parse(other.stdout).cniVersion, '1.0.0');
  t.type(timing(other.stderr).compiled, 'number', 'the cache was rejected and the code compiled');
  t.equal(timing(other.stderr)['compiled-from-cache'], undefined);
  t.type(timing(other.stderr)['head-compiled'], 'number', "and the head's");
});

t.test('a real ADD, CHECK and DEL load neither node:child_process, node:fs/promises nor node:crypto', async (t) => {
  const host = await tempNetns(t, 'bunh');
  const pod = await tempNetns(t, 'bunp');
  await vethPair(pod, host);
  const stateDir = tempDir(t, 'buns');
  const att = { CNI_CONTAINERID: 'krtbun', CNI_NETNS: pod.path, CNI_IFNAME: 'eth0', KATA_CNI_TIMING: '1' };
  const cfg = (prev: unknown) => JSON.stringify({ cniVersion: '1.0.0', name: 'krt-bun', type: 'kata-cni', stateDir, prevResult: prev });
  const add = await execClean(
    [out],
    { ...att, CNI_COMMAND: 'ADD' },
    cfg({ cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: pod.path }] }),
  );
  t.equal(add.code, 0, add.stdout);
  const check = await execClean([out], { ...att, CNI_COMMAND: 'CHECK' }, cfg(JSON.parse(add.stdout)));
  t.equal(check.code, 0, check.stdout);
  const del = await execClean([out], { ...att, CNI_COMMAND: 'DEL' }, cfg(JSON.parse(add.stdout)));
  t.equal(del.code, 0, del.stdout);
  for (const [cmd, r] of [
    ['ADD', add],
    ['CHECK', check],
    ['DEL', del],
  ] as const) {
    const m = timing(r.stderr);
    t.equal(m['loaded:child_process'], 0, `${cmd}: node:child_process not loaded`);
    t.equal(m['loaded:fs/promises'], 0, `${cmd}: node:fs/promises not loaded`);
    t.equal(m['loaded:crypto'], 0, `${cmd}: node:crypto not loaded`);
    t.type(m['compiled-from-cache'], 'number', `${cmd}: compiled from the code cache`);
    t.type(m['head-compiled-from-cache'], 'number', `${cmd}: the head from its code cache`);
  }
});

#!/usr/bin/env node
// Builds the kata-cni executable: ONE file, dist/cni/kata-cni.js. It is a shell script
// (cni/build/shell-boot.ts: it starts the helpers and execs Node on its last here-document, the
// boot, cni/build/boot.ts), followed by the payload as bytes (cni/build/payload.ts): the head
// (cni/build/launcher.ts), the plugin's code (the "body"), a V8 code cache for each of the two,
// and pino's code; see boot.ts, launcher.ts and payload.ts for why.
//  - the body: esbuild bundles cni/main.ts and everything it reaches (host/, plugins/network/, pino)
//    and minifies it; dynamic imports stay lazily initialised modules inside the one file, so
//    VERSION never runs the network code. It is wrapped as `(function (require) { ... })`.
//  - the config schema is compiled ahead of time (ajv standalone code) in place of
//    cni/config-validator.ts, so no call loads ajv or compiles a schema.
//  - host/exec.ts runs commands with host/execa-lite.ts (no execa); node:crypto is replaced by
//    cni/build/crypto-lite.ts (see there for why); node:child_process and node:fs/promises load on
//    first use (below); pino is a payload part of its own, evaluated on first use (see below).
//  - the code caches of the head and the body: trained on real calls by this Node (below), else
//    every function compiled (V8's --no-lazy only while compiling, so the cache's flags match a
//    plain `node`); serialised, as bytes.
//  - the boot and the head are classic scripts (esbuild "iife") run as CommonJS: the boot as
//    Node's main script (/dev/fd/8), the head and the body as functions of its require.
// Usage: node cni/build/bundle.mjs [--outfile PATH] [--metafile PATH] [--no-code-cache]
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(join(root, 'package.json'));
const esbuild = require('esbuild');
const { Ajv } = require('ajv');
const standaloneCode = require('ajv/dist/standalone').default;

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? resolve(args[i + 1]) : dflt;
};
const outfile = opt('--outfile', join(root, 'dist/cni/kata-cni.js'));
const metafile = opt('--metafile', undefined);
// --code-cache trained (default) | eager | none; --no-code-cache is none.
const cacheMode = args.includes('--no-code-cache')
  ? 'none'
  : args.includes('--code-cache')
    ? args[args.indexOf('--code-cache') + 1]
    : 'trained';
if (args.includes('--code-cache') && !['trained', 'eager', 'none'].includes(cacheMode))
  throw new Error('--code-cache: trained, eager or none');

// Same options as cni/config-validator.ts (AJV_OPTIONS), plus code generation.
// Annotations (title, description) do not validate anything: leave them out of the generated code.
const stripAnnotations = (v) =>
  Array.isArray(v)
    ? v.map(stripAnnotations)
    : v && typeof v === 'object'
      ? Object.fromEntries(
          Object.entries(v)
            .filter(([k]) => k !== 'title' && k !== 'description')
            .map(([k, x]) => [k, stripAnnotations(x)]),
        )
      : v;
const schema = stripAnnotations(JSON.parse(readFileSync(join(root, 'cni/config-schema.json'), 'utf8')));
const ajv = new Ajv({ allErrors: true, strict: true, code: { source: true, esm: true } });
const validatorSource = standaloneCode(ajv, ajv.compile(schema));

const precompiledValidator = {
  name: 'precompiled-config-validator',
  setup(build) {
    build.onLoad({ filter: /[\\/]cni[\\/]config-validator\.ts$/ }, () => ({
      contents: validatorSource,
      loader: 'js',
      resolveDir: join(root, 'cni'),
    }));
  },
};

// pino (two thirds of the bundle's dependencies by size) is needed only when logging is configured.
// Even unused, bundled code costs V8 a parse at every start, and a string literal in the body would
// still be a 64 KiB constant in the code cache. So pino is bundled on its own into CommonJS code that
// travels as a part of the payload of its own (cni/build/payload.ts); the 'pino' import compiles it
// on first use (cni/log.ts imports it dynamically, only when a log file or level is set).
const pinoCjs = (
  await esbuild.build({
    absWorkingDir: root,
    stdin: { contents: "module.exports = require('pino');", resolveDir: root, loader: 'js' },
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    minify: true,
    legalComments: 'none',
    write: false,
    logLevel: 'warning',
  })
).outputFiles[0].text;
const pinoFromPayload = {
  name: 'pino-from-payload',
  setup(build) {
    build.onResolve({ filter: /^pino$/ }, () => ({ path: 'pino', namespace: 'pino-from-payload' }));
    build.onLoad({ filter: /.*/, namespace: 'pino-from-payload' }, () => ({
      loader: 'js',
      contents: [
        "const source = globalThis[Symbol.for('kata-cni.payload')].text('pino');",
        'const m = { exports: {} };',
        "new Function('module', 'exports', 'require', '__filename', '__dirname', source)(m, m.exports, require, '/kata-cni/pino.js', '/kata-cni');",
        'export const pino = m.exports.pino ?? m.exports;',
        'export default pino;',
      ].join('\n'),
    }));
  },
};

// node:child_process and node:fs/promises load on first use, not when a module importing them is
// initialised: each is replaced by a generated module whose exports (the real module's functions)
// load it on their first call. node:child_process (with net and the stream machinery) costs about
// 3 ms per process here and node:fs/promises about 1 ms, and a normal ADD, DEL or CHECK calls
// neither: its ip/tc helpers are started by cni/early-helpers.ts (cni/raw-spawn.ts), and the
// promise-based file calls are on other paths (macvtap, sysfs). Importing anything that is not a
// function from them fails the build instead of misbehaving.
const LAZY_BUILTINS = ['child_process', 'fs/promises'];
const lazyBuiltins = {
  name: 'lazy-builtins',
  setup(build) {
    const filter = new RegExp(`^(node:)?(${LAZY_BUILTINS.map((b) => b.replace('/', '\\/')).join('|')})$`);
    build.onResolve({ filter }, (a) =>
      a.namespace === 'lazy-builtins' ? undefined : { path: a.path.replace(/^node:/, ''), namespace: 'lazy-builtins' },
    );
    build.onLoad({ filter: /.*/, namespace: 'lazy-builtins' }, (a) => {
      const real = require(`node:${a.path}`);
      const names = Object.keys(real).filter((k) => typeof real[k] === 'function' && /^[A-Za-z_$][\w$]*$/.test(k));
      return {
        loader: 'js',
        contents: [
          'let real;',
          `const load = () => (real ??= require(${JSON.stringify(`node:${a.path}`)}));`,
          ...names.map((n) => `export function ${n}(...args) { return load().${n}(...args); }`),
        ].join('\n'),
      };
    });
  },
};

// node:crypto -> cni/build/crypto-lite.ts (see there for why).
const cryptoLite = {
  name: 'crypto-lite',
  setup(build) {
    build.onResolve({ filter: /^(node:)?crypto$/ }, (a) =>
      a.importer.endsWith('crypto-lite.ts') ? undefined : { path: join(root, 'cni/build/crypto-lite.ts') },
    );
  },
};

mkdirSync(dirname(outfile), { recursive: true });
const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: [join(root, 'cni/main.ts')],
  bundle: true,
  platform: 'node',
  format: 'iife',
  keepNames: true,
  target: 'node20',
  minify: true,
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
  plugins: [precompiledValidator, pinoFromPayload, cryptoLite, lazyBuiltins],
  write: false,
});
const body = `(function (require) {\n${result.outputFiles[0].text}})`;

// The boot (boot.ts: the file's own code, compiled from source at every call, so kept tiny) and
// the head (launcher.ts: travels in the payload with a code cache of its own), each also as a
// training copy (KATA_CNI_TRAIN true: reads and writes the caches named by KATA_CNI_TRAIN_CACHE).
/** One entry bundled for Node 20 into a string: the options both kinds of script below share. */
const bundleEntry = async (entry, options) =>
  (
    await esbuild.build({
      absWorkingDir: root,
      entryPoints: [join(root, entry)],
      bundle: true,
      platform: 'node',
      target: 'node20',
      logLevel: 'warning',
      write: false,
      ...options,
    })
  ).outputFiles[0].text;
const buildScript = (entry, train) =>
  bundleEntry(entry, {
    format: 'iife',
    minify: true,
    legalComments: 'none',
    define: { KATA_CNI_TRAIN: String(train) },
    plugins: [cryptoLite, lazyBuiltins],
  });
// The shell lines first (cni/build/shell-boot.ts, bundled from its source here, so that no tsc
// output is needed): they start the call's helpers and exec Node on the boot, their last
// here-document; the payload (cni/build/payload.ts) follows it as bytes.
const sourceModule = async (entry) => {
  const text = await bundleEntry(entry, { format: 'esm' });
  return import(`data:text/javascript;base64,${Buffer.from(text).toString('base64')}`);
};
const [{ shellBoot }, { BOOT_END, PART_ORDER, PREAMBLE_MAX }] = await Promise.all([
  sourceModule('cni/build/shell-boot.ts'),
  sourceModule('cni/build/payload.ts'),
]);
// dash writes a here-document of up to 4 KiB to its pipe itself; a longer one costs a fork.
const buildBoot = async (train) => {
  const text = await buildScript('cni/build/boot.ts', train);
  const size = Buffer.byteLength(text);
  if (size > 4096) throw new Error(`kata-cni: the boot is ${size} bytes; keep it within 4096 (dash's here-document pipe write)`);
  return text;
};
// The head has no training switch of its own (launcher.ts): the same code in both copies.
const buildHead = async () => `(function (require) {\n${await buildScript('cni/build/launcher.ts', false)}})`;

// The executable (cni/build/payload.ts): the shell lines ending in the boot's here-document, then
// the payload's header line and its parts as bytes. The code parts are sliced from the file as
// latin1, so they must be ASCII, which esbuild's output is (it escapes the rest).
const ascii = (name, text) => {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length !== text.length) throw new Error(`kata-cni: the ${name} part is not ASCII`);
  return bytes;
};
const executable = (bootText, headText, headCache, cacheBytes) => {
  const parts = [
    ['head', ascii('head', headText)],
    ['headcache', headCache],
    ['body', ascii('body', body)],
    ['cache', cacheBytes],
    ['pino', ascii('pino', pinoCjs)],
  ];
  if (parts.map(([name]) => name).join() !== PART_ORDER.join()) throw new Error('kata-cni: the parts are not in PART_ORDER');
  const header = JSON.stringify(Object.fromEntries(parts.map(([name, bytes]) => [name, bytes.length])));
  const script = `#!/bin/sh\n${shellBoot(bootText)}`;
  if (!script.endsWith(`\n${BOOT_END}\n`)) throw new Error('kata-cni: the shell lines do not end with the boot');
  if (script.length + header.length + 1 > PREAMBLE_MAX)
    throw new Error(`kata-cni: shell lines, boot and header exceed ${PREAMBLE_MAX} bytes`);
  return Buffer.concat([Buffer.from(script, 'latin1'), Buffer.from(`${header}\n`, 'latin1'), ...parts.map(([, bytes]) => bytes)]);
};

// The code caches of the head and the body, made by this Node in fresh processes without flags (V8 checks its
// flag hash at load time): trained on real calls (cni/build/train-cache.mjs) where that can run
// (root, unshare, iproute2), else every function compiled (--no-lazy only while compiling).
function trainedCaches(scratch) {
  const exe = join(scratch, 'kata-cni-train');
  const cacheFile = join(scratch, 'train.cache');
  writeFileSync(exe, executable(trainBoot, head, Buffer.alloc(0), Buffer.alloc(0)), { mode: 0o755 });
  const r = spawnSync(
    'unshare',
    ['--net', '--mount', '--propagation', 'private', process.execPath, join(root, 'cni/build/train-cache.mjs'), exe, cacheFile, scratch],
    { stdio: ['ignore', 'inherit', 'pipe'], encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } },
  );
  if (r.status === 0) {
    process.stderr.write(r.stderr);
    return { headCache: readFileSync(`${cacheFile}.head`), cache: readFileSync(cacheFile) };
  }
  const why = (r.error?.message ?? r.stderr).trim().split('\n').pop();
  process.stderr.write(`kata-cni: cannot train the code cache on real calls (${why}); caching every function instead\n`);
  return undefined;
}

function eagerCache(scratch, name, code) {
  writeFileSync(join(scratch, `${name}.js`), code);
  const r = spawnSync(
    process.execPath,
    [
      '-e',
      [
        "const { readFileSync, writeFileSync } = require('node:fs');",
        "const { setFlagsFromString } = require('node:v8');",
        "const { Script } = require('node:vm');",
        'const [src, out] = process.argv.slice(1);',
        "setFlagsFromString('--no-lazy');",
        "const s = new Script(readFileSync(src, 'utf8'), { filename: 'kata-cni' });",
        "setFlagsFromString('--lazy');",
        'writeFileSync(out, s.createCachedData());',
      ].join('\n'),
      join(scratch, `${name}.js`),
      join(scratch, `${name}.cache`),
    ],
    { stdio: ['ignore', 'inherit', 'inherit'], env: { PATH: process.env.PATH ?? '' } },
  );
  if (r.status !== 0) throw new Error(`kata-cni: making the code cache failed (exit ${r.status})`);
  return readFileSync(join(scratch, `${name}.cache`));
}

const [boot, trainBoot, head] = await Promise.all([buildBoot(false), buildBoot(true), buildHead()]);
let headCache = Buffer.alloc(0);
let cache = Buffer.alloc(0);
if (cacheMode !== 'none') {
  const scratch = mkdtempSync(join(tmpdir(), 'kata-cni-cache-'));
  try {
    ({ headCache, cache } = (cacheMode === 'trained' ? trainedCaches(scratch) : undefined) ?? {
      headCache: eagerCache(scratch, 'head', head),
      cache: eagerCache(scratch, 'body', body),
    });
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
const contents = executable(boot, head, headCache, cache);
// Written atomically, so a plugin run (or a test) meanwhile never executes half a file.
const tmp = `${outfile}.${process.pid}.tmp`;
writeFileSync(tmp, contents, { mode: 0o755 });
chmodSync(tmp, 0o755);
renameSync(tmp, outfile);
if (metafile) writeFileSync(metafile, JSON.stringify(result.metafile));
const kib = (n) => `${(n / 1024).toFixed(0)} KiB`;
process.stderr.write(
  `kata-cni: ${outfile} (${kib(contents.length)}: boot ${kib(boot.length)}, head ${kib(head.length)} with a ${kib(headCache.length)} code cache, code ${kib(body.length)}, pino ${kib(pinoCjs.length)}, code cache ${kib(cache.length)})\n`,
);

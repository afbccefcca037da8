/**
 * The guest agent as one file: tsc builds guest/agent/*.ts into dist/guest/agent/, esbuild
 * (a devDependency) bundles that into a single minified CommonJS file: one file to read and compile at boot,
 * which matters under TCG. The agent imports only node: built-ins, which stay external. Beside it
 * go its start (guest/agent/start.ts, bundled the same way) and the V8 code cache the start uses,
 * trained here by running the agent with the guest's node binary until it serves.
 */
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KataError } from '../../host/errors.js';
import { run } from '../../host/exec.js';
import { AGENT_NODE_FLAGS } from './init.js';

/** The repository root (this file is dist/runtime-core/guest-kit/agent-bundle.js once built). */
export function projectRoot(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
}

function agentEntry(root: string, name: string): string {
  return join(root, 'dist', 'guest', 'agent', `${name}.js`);
}

/** The agent (agent.cjs) and its start (start.cjs), each one CommonJS file. */
export interface AgentFiles {
  agent: Buffer;
  start: Buffer;
}

/** The built agent modules (for fingerprints): [relative path, size, mtimeMs]. */
export async function agentSourceStats(root = projectRoot()): Promise<[string, number, number][]> {
  const dir = join(root, 'dist', 'guest');
  const out: [string, number, number][] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.name.endsWith('.js')) {
        const s = await stat(p);
        out.push([relative(root, p), s.size, s.mtimeMs]);
      }
    }
  };
  await walk(dir);
  return out.sort((a, b) => a[0].localeCompare(b[0]));
}

/**
 * Bundle the agent into one CommonJS file (esbuild, minified: less for node to parse at boot), and
 * its start. CommonJS rather than ESM: node then skips its asynchronous ESM loader at start, which
 * measured about a quarter faster to "listening" under TCG.
 */
export async function bundleAgent(root = projectRoot()): Promise<AgentFiles> {
  for (const name of ['main', 'start']) {
    const entry = agentEntry(root, name);
    try {
      await stat(entry);
    } catch {
      throw new KataError('E_STATE', `the guest agent is not built (${entry} is missing); run \`npx tsc -p .\` (or npm run build) first`);
    }
  }
  let esbuild: typeof import('esbuild');
  try {
    // Resolved from the project (not from the importer: the containerd shim is a bundle elsewhere).
    esbuild = createRequire(join(root, 'package.json'))('esbuild') as typeof import('esbuild');
  } catch {
    throw new KataError('E_EXEC_NOT_FOUND', 'esbuild is not installed (it bundles the guest agent); run `npm ci` (it is a devDependency)');
  }
  const one = async (name: string): Promise<Buffer> => {
    const r = await esbuild.build({
      entryPoints: [agentEntry(root, name)],
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node20',
      minify: true,
      legalComments: 'none',
      write: false,
      logLevel: 'silent',
      banner: { js: `// kata-resources guest agent${name === 'start' ? ': start' : ''} (bundled)` },
    });
    const file = r.outputFiles[0];
    if (!file) throw new KataError('E_INTERNAL', `esbuild produced no output for the guest agent's ${name}`);
    return Buffer.from(file.contents);
  };
  const [agent, start] = await Promise.all([one('main'), one('start')]);
  return { agent, start };
}

/**
 * The V8 code cache of the agent as the guest's node makes it: `node` (the very binary the image
 * gets, with the flags kata-init gives it: AGENT_NODE_FLAGS) starts the agent through start.cjs on
 * /dev/null as its port and writes the cache once it serves. Undefined when that fails (the
 * guest then starts without a cache); the reason goes to `progress`.
 */
export async function trainAgentCodeCache(
  node: string,
  files: AgentFiles,
  progress: (m: string) => void = () => {},
): Promise<Buffer | undefined> {
  const dir = await mkdtemp(join(tmpdir(), 'kr-agent-cache-'));
  try {
    await writeFile(join(dir, 'agent.cjs'), files.agent);
    await writeFile(join(dir, 'start.cjs'), files.start);
    const out = join(dir, 'agent.cjs.cache');
    const r = await run(node, [...AGENT_NODE_FLAGS, join(dir, 'start.cjs'), '--device', '/dev/null'], {
      reject: false,
      timeoutMs: 60_000,
      env: { KATA_AGENT_CODE_CACHE_OUT: out },
    }).catch((e: Error) => ({ exitCode: -1, stderr: e.message }));
    const cache = await readFile(out).catch(() => undefined);
    if (!cache?.length)
      progress(
        `no code cache for the guest agent (the training start ended with ${r.exitCode}: ${r.stderr.trim()}); it starts without one`,
      );
    return cache?.length ? cache : undefined;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The guest agent's start: compiles the agent bundle (agent.cjs, beside this file) with the V8 code
 * cache the guest kit made at build time (agent.cjs.cache), so the functions the agent runs up to
 * serving are neither parsed nor compiled in the guest, where every compile runs under TCG. V8
 * checks the cache against its version, flags and the source; a cache it rejects, or none, is a
 * plain compile (the agent only starts slower), said once on stderr.
 *
 *   node start.cjs [agent arguments]        as node agent.cjs [agent arguments]
 *
 * KATA_AGENT_CODE_CACHE_OUT=PATH (the kit build): once the agent serves (main.ts calls
 * globalThis.kataAgentServing), write the code cache, now holding every function run so far, to
 * PATH and exit.
 */
import { readFileSync, writeFileSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Script } from 'node:vm';

const self = process.argv[1] ?? '/opt/kata-agent/start.cjs';
const agent = join(dirname(self), 'agent.cjs');
const out = process.env.KATA_AGENT_CODE_CACHE_OUT;
let cachedData: Buffer | undefined;
try {
  if (out === undefined) cachedData = readFileSync(`${agent}.cache`);
} catch {
  /* no cache: a plain compile */
}
// The CommonJS wrapper node itself puts around a module, so the bundle runs as if required.
const source = `(function (exports, require, module, __filename, __dirname) {${readFileSync(agent, 'utf8')}\n})`;
const script = new Script(source, { filename: agent, ...(cachedData ? { cachedData } : {}) });
if (cachedData && script.cachedDataRejected) writeSync(2, `kata-agent: code cache ${agent}.cache rejected by V8; compiled without it\n`);
if (out !== undefined)
  (globalThis as { kataAgentServing?: () => void }).kataAgentServing = () => {
    writeFileSync(out, script.createCachedData());
    process.exit(0);
  };
process.argv[1] = agent; // the agent finds kata-monitor beside argv[1]
const mod = { exports: {} };
(script.runInThisContext() as (...a: unknown[]) => void)(mod.exports, createRequire(agent), mod, agent, dirname(agent));

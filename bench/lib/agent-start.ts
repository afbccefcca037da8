/**
 * The guest agent's start on this host: spawn to its "ready on" line with /dev/null as its port,
 * plain (`node agent.cjs`) and as the guest's init starts it (`node [AGENT_NODE_FLAGS] start.cjs`,
 * with the code cache the kit build trains), against `node -e 0` (spawn to exit) in the same loop. And the agent's own
 * spawn-to-serve in a guest, read from the ready line it prints on the guest console.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleAgent, trainAgentCodeCache } from '../../runtime-core/guest-kit/agent-bundle.js';
import { AGENT_NODE_FLAGS } from '../../runtime-core/guest-kit/init.js';
import { msSince, now } from './stats.js';

/** Milliseconds from spawn to exit, or (ready) to the agent's ready line on stderr. */
function timed(args: string[], ready: boolean): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = now();
    const c = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, KATA_AGENT_GUEST: '' } });
    let err = '';
    let ms: number | undefined;
    const timer = setTimeout(() => c.kill('SIGKILL'), 30_000);
    c.stderr.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      if (ready && ms === undefined && /kata-agent: ready on /.test(err)) {
        ms = msSince(t0);
        c.kill('SIGKILL');
      }
    });
    c.on('exit', () => {
      clearTimeout(timer);
      if (!ready) ms = msSince(t0);
      if (ms === undefined) reject(new Error(`${args.join(' ')} ended before it served: ${err.trim()}`));
      else resolve(ms);
    });
  });
}

export interface HostAgentStart {
  nodeE0: number[];
  plain: number[];
  withCache: number[];
  cacheBytes: number;
}

/** `runs` rounds of node -e 0, the plain agent and the agent through start.cjs with its cache, alternating. */
export async function hostAgentStart(runs: number): Promise<HostAgentStart> {
  const dir = mkdtempSync(join(tmpdir(), 'krt-bench-agent-'));
  try {
    const files = await bundleAgent();
    const cache = await trainAgentCodeCache(process.execPath, files);
    if (!cache) throw new Error('the code cache training produced nothing');
    writeFileSync(join(dir, 'agent.cjs'), files.agent);
    writeFileSync(join(dir, 'start.cjs'), files.start);
    writeFileSync(join(dir, 'agent.cjs.cache'), cache);
    const r: HostAgentStart = { nodeE0: [], plain: [], withCache: [], cacheBytes: cache.length };
    for (let i = 0; i <= runs; i++) {
      const a = await timed(['-e', '0'], false);
      const b = await timed([join(dir, 'agent.cjs'), '--device', '/dev/null'], true);
      const c = await timed([...AGENT_NODE_FLAGS, join(dir, 'start.cjs'), '--device', '/dev/null'], true);
      if (i === 0) continue; // warm-up round
      r.nodeE0.push(a);
      r.plain.push(b);
      r.withCache.push(c);
    }
    return r;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The agent's spawn-to-serve in milliseconds from its ready line on a guest console, when there is one. */
export function guestAgentServeMs(console: string): number | undefined {
  const m = /kata-agent: ready on \S+ \(uptime [\d.]+ s, agent ([\d.]+) s\)/.exec(console);
  return m ? Number(m[1]) * 1000 : undefined;
}

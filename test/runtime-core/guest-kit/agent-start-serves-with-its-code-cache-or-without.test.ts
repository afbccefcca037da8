/**
 * The agent as the guest's init starts it (start.cjs beside agent.cjs): with the code cache the kit
 * build trains, with a cache V8 rejects (it says so and compiles without), and with none, it
 * serves; and up to serving it loads none of the built-ins it only needs later.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { bundleAgent, trainAgentCodeCache } from '../../../runtime-core/guest-kit/agent-bundle.js';

const dir = mkdtempSync(join(tmpdir(), 'krt-agent-start-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** Start node with these arguments; resolve with its stderr once it printed `until`, then kill it. */
function startUntil(args: string[], until: RegExp, onReady: () => Promise<void> = async () => {}): Promise<string> {
  return new Promise((resolve, reject) => {
    // Without NODE_OPTIONS: tap's processinfo puts its loader there for every node child (even when
    // the env given has none), and that loader would load built-ins in the agent's process. env(1)
    // execs node in place, so the pid is node's.
    const c = spawn('/usr/bin/env', ['-u', 'NODE_OPTIONS', process.execPath, ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, KATA_AGENT_GUEST: '' },
    });
    let err = '';
    let seen = false;
    const timer = setTimeout(() => c.kill('SIGKILL'), 60_000);
    c.stderr.setEncoding('utf8').on('data', (d: string) => {
      err += d;
      if (!seen && until.test(err)) {
        seen = true;
        onReady()
          .then(() => c.kill('SIGKILL'))
          .catch((e: Error) => {
            c.kill('SIGKILL');
            reject(e);
          });
      }
    });
    c.on('exit', () => {
      clearTimeout(timer);
      if (seen) resolve(err);
      else reject(new Error(`${args.join(' ')} ended before ${until}: ${err}`));
    });
  });
}

/** One Check over the agent's unix socket. */
function check(sock: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const s = connect(sock);
    let buf = '';
    s.on('connect', () => s.write(`${JSON.stringify({ id: 7, method: 'Check', params: {} })}\n`));
    s.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      if (buf.includes('\n')) {
        s.destroy();
        resolve(JSON.parse(buf.slice(0, buf.indexOf('\n'))));
      }
    });
    s.on('error', reject);
  });
}

t.test('start.cjs serves with the trained cache, a rejected one, and none', async (t) => {
  const files = await bundleAgent();
  const cache = await trainAgentCodeCache(process.execPath, files);
  t.ok(cache && cache.length > 1024, `the training wrote a code cache (${cache?.length} bytes)`);
  writeFileSync(join(dir, 'agent.cjs'), files.agent);
  writeFileSync(join(dir, 'start.cjs'), files.start);
  const cacheFile = join(dir, 'agent.cjs.cache');
  const serve = async (label: string): Promise<string> => {
    const sock = join(dir, `${label}.sock`);
    let answer: unknown;
    const err = await startUntil([join(dir, 'start.cjs'), '--socket', sock], /listening on /, async () => {
      answer = await check(sock);
    });
    t.same(answer, { id: 7, result: { status: 'SERVING' } }, `${label}: Check answered`);
    return err;
  };

  writeFileSync(cacheFile, cache!);
  t.notMatch(await serve('cached'), /rejected/, 'the trained cache is accepted');
  truncateSync(cacheFile, 2000);
  t.match(await serve('rejected'), /code cache .* rejected by V8; compiled without it/, 'a damaged cache is rejected and said so');
  rmSync(cacheFile);
  t.notMatch(await serve('none'), /rejected/, 'no cache: a plain start, nothing said');
});

t.test('up to serving on its port the agent loads no child_process, net, streams or fs/promises', async (t) => {
  // A preload that notes the built-ins loaded when the agent writes its ready line to fd 2.
  const hook = join(dir, 'hook.cjs');
  writeFileSync(
    hook,
    `const fs = require('node:fs'); const w = fs.writeSync; const base = process.moduleLoadList.length;
fs.writeSync = (fd, s, ...a) => {
  if (fd === 2 && /ready on/.test(String(s))) w(2, 'loaded: ' + process.moduleLoadList.slice(base).join('|') + '\\n');
  return w(fd, s, ...a);
};\n`,
  );
  // Until the ready line itself: the hook writes its line just before it, in a write of its own,
  // so stopping at the first would race the second.
  const err = await startUntil(['--require', hook, join(dir, 'start.cjs'), '--device', '/dev/null'], /kata-agent: ready on [^\n]*\n/);
  const loaded = /loaded: (.*)\n/.exec(err)![1]!.split('|');
  // The entries are "NativeModule <name>": the checks below compare whole entries.
  t.ok(
    loaded.some((m) => m.startsWith('NativeModule ')),
    'the hook saw built-ins load',
  );
  for (const m of ['child_process', 'net', 'stream', 'fs/promises', 'readline'])
    t.notOk(loaded.includes(`NativeModule ${m}`), `${m} is not loaded before serving`);
  t.match(err, /kata-agent: ready on \/dev\/null \(uptime [\d.]+ s, agent [\d.]+ s\)/, 'the ready line says the agent\u2019s own uptime');
});

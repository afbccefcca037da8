/**
 * A Kata user's configuration through the real CLI (one VM boot under TCG): Kata's
 * configuration-qemu.toml rendered from its template with Kata's Makefile defaults
 * (test/fixtures/kata/), changed only in the paths that cannot exist here (Kata's guest assets,
 * its Rust virtiofsd) and the state directory of this test. `check --config` accepts it, `sandbox
 * up` boots it with one line about the Kata settings that have no effect and none called unknown;
 * then through the VM: `exec` forwards stdin and streams 50 MiB of binary output byte-exact,
 * `exec -t` under `script` runs an interactive command on a pty, `agent` sends one agent request
 * (refusing state-changing ones without --force), and `metrics` prints Prometheus text with the
 * host and the guest series. `down` leaves nothing.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureGuestKit } from '../../../runtime-core/guest-kit/index.js';
import { renderKataTemplate, renderKataTemplateLocal } from '../../helpers/kata-config.js';
import { cli, explain, parseJson, podNetwork, residue, tempRuntime, viewPids, waitFor } from '../../helpers/sandbox.js';

const CLI = fileURLToPath(new URL('../../../runtime-core/cli/main.js', import.meta.url));
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

interface Raw {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** A command with stdin from `input` and stdout kept as bytes; `onStdout` may write more input. */
function runRaw(
  file: string,
  args: string[],
  input: Buffer | undefined,
  timeoutMs: number,
  onStdout?: (all: Buffer, stdin: NodeJS.WritableStream) => void,
): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out.push(d);
      onStdout?.(Buffer.concat(out), child.stdin);
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      err += d;
    });
    child.stdin.on('error', () => {});
    if (input) child.stdin.end(input);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr: err });
    });
  });
}

/** Prometheus text exposition format: every sample line well-formed, under a TYPE of its family. */
function parsePrometheus(text: string): {
  families: Map<string, string>;
  samples: { name: string; labels: Record<string, string>; value: number }[];
} {
  const families = new Map<string, string>();
  const samples: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      families.set(type[1]!, type[2]!);
      continue;
    }
    if (/^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*$/.test(line)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$/.exec(line);
    if (!m) throw new Error(`not Prometheus text: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g)) labels[l[1]!] = l[2]!;
    if (!families.has(m[1]!)) throw new Error(`sample ${m[1]} has no TYPE line before it`);
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return { families, samples };
}

t.test("Kata's QEMU configuration boots unchanged; exec streams, pty and metrics through the VM", async (t) => {
  const kit = await ensureGuestKit();
  const rt = tempRuntime(t);
  const local = renderKataTemplateLocal(kit);
  // Only the paths differ from what a Kata user has (and this test's state directory, added below).
  const kataLines = renderKataTemplate().split('\n');
  const changed = local
    .split('\n')
    .filter((l, i) => l !== kataLines[i])
    .map((l) => l.split('=')[0]!.trim());
  t.same(
    changed,
    ['kernel', 'image', 'virtio_fs_daemon'],
    'the rendered Kata file, only the guest asset and virtiofsd paths substituted (its QEMU path is this one)',
  );
  writeFileSync(rt.config, local.replace(/^\[runtime\]$/m, `[runtime]\nstate_dir = "${rt.stateDir}"`));
  const C = ['--config', rt.config];

  const chk = await cli(['check', ...C, '--json'], { timeoutMs: 120_000 });
  const items = parseJson<{ name: string; ok: boolean; detail: string }[]>(chk);
  t.ok(items.find((i) => i.name === 'configuration')?.ok, `check --config: sandbox up would accept it (${explain(chk)})`);
  t.notOk(
    items.some((i) => i.name.startsWith('config: ') && !i.ok),
    'no configuration problem',
  );

  const net = await podNetwork(t, { v4: '10.78.0.2/24', gw4: '10.78.0.1' });
  const id = `krt-kata-${process.pid}`;
  const up = await cli(['sandbox', 'up', '--netns', net.pod.name!, '--id', id, ...C, '--json'], {
    timeoutMs: 420_000,
    env: { KATA_RESOURCES_HEARTBEAT_MS: '1000' },
  });
  if (up.code !== 0) {
    t.fail(`sandbox up on Kata's file failed: ${explain(up)}`);
    return;
  }
  const sb = parseJson<{ state: string; pids: Record<string, number>; endpoints: { tap?: string }[] }>(up);
  t.equal(sb.state, 'running', "Kata's file boots");
  const pids = viewPids(sb);
  const warnLines = up.stderr.split('\n').filter((l) => /"level":40/.test(l));
  t.equal(
    warnLines.filter((l) => /Kata setting\(s\) have no effect here/.test(l)).length,
    1,
    'one line about the Kata settings without effect',
  );
  t.notMatch(up.stderr, /unknown key|a typo/i, 'no Kata key is called unknown');
  t.match(up.stderr, /\.\. [^\n]+ \(still waiting, \d+ s\)/, 'a heartbeat names the step and the time while up waits');
  t.equal(up.stdout.trim().split('\n').length, 1, 'and --json stays one object on stdout');

  t.test('exec forwards stdin and streams 50 MiB of binary output byte-exact', async (t) => {
    const input = randomBytes(3 * 1024 * 1024 + 7);
    const sum = await runRaw(process.execPath, [CLI, 'exec', id, ...C, '--', 'sha256sum'], input, 300_000);
    t.equal(sum.code, 0, `sha256sum exits 0 ${sum.stderr}`);
    t.equal(sum.stdout.toString().split(' ')[0], sha(input), "the guest's hash of stdin is the host's");
    const script = 'head -c 52428800 /dev/urandom > /tmp/krt-blob && sha256sum /tmp/krt-blob >&2 && cat /tmp/krt-blob; rm -f /tmp/krt-blob';
    const big = await runRaw(
      process.execPath,
      [CLI, 'exec', id, ...C, '--timeout', '900000', '--', 'sh', '-c', script],
      undefined,
      900_000,
    );
    t.equal(big.code, 0, `exits 0 ${big.stderr.slice(-500)}`);
    t.equal(big.stdout.length, 50 * 1024 * 1024, 'every byte of 50 MiB');
    t.equal(sha(big.stdout), /^([0-9a-f]{64}) /m.exec(big.stderr)?.[1], "the host's hash of the output is the guest's of the file");
  });

  t.test('exec -t under script runs an interactive command on a pty', async (t) => {
    const cmd = [process.execPath, CLI, 'exec', '-t', id, ...C, '--', 'sh', '-c', 'tty; echo ready; read x; echo got=$x; exit 3'].map(
      (a) => `'${a.replace(/'/g, `'\\''`)}'`,
    );
    let sent = false;
    const r = await runRaw('script', ['-qefc', cmd.join(' '), '/dev/null'], undefined, 180_000, (all, stdin) => {
      if (!sent && all.includes('ready')) {
        sent = true;
        stdin.write('hello\r');
      }
    });
    const out = r.stdout.toString();
    t.ok(sent, `the command asked for input: ${JSON.stringify(out.slice(-300))}`);
    t.match(out, /\/dev\/pts\/\d+/, 'its stdin is a terminal in the guest');
    t.match(out, /got=hello/, 'what was typed reached it');
    t.equal(r.code, 3, "script exits with the command's status");
  });

  t.test('agent: one request to the guest agent; state-changing methods only with --force', async (t) => {
    const v = await cli(['agent', id, 'Version', ...C], { timeoutMs: 60_000 });
    t.equal(v.code, 0, `agent Version exits 0 ${v.code === 0 ? '' : explain(v)}`);
    t.match(
      parseJson<{ agent_version: string; kernel_release: string }>(v),
      { agent_version: String, kernel_release: String },
      'the answer',
    );
    const l = await cli(['agent', id, 'ListInterfaces', '{}', ...C], { timeoutMs: 60_000 });
    const ifs = parseJson<{ Interfaces: { hwAddr: string }[] }>(l).Interfaces;
    t.ok(
      ifs.some((i) => i.hwAddr === net.mac),
      'inline JSON params; the guest has the veth MAC',
    );
    const x = await cli(['agent', id, 'Exec', '{"argv":["echo","hi"]}', ...C], { timeoutMs: 60_000 });
    t.equal(parseJson<{ stdout: string }>(x).stdout, 'hi\n', 'Exec with params');
    const sd = await cli(['agent', id, 'Shutdown', ...C], { timeoutMs: 60_000 });
    t.equal(sd.code, 1, 'Shutdown without --force is refused');
    t.match(sd.stderr, /E_INVALID_ARGUMENT.*Shutdown changes what the supervisor manages/);
    const bad = await cli(['agent', id, 'Frobnicate', ...C], { timeoutMs: 60_000 });
    t.match(bad.stderr, /E_INVALID_ARGUMENT: agent method "Frobnicate" does not exist/, 'an unknown method is named');
    const st = await cli(['sandbox', 'status', id, ...C, '--json'], { timeoutMs: 60_000 });
    t.equal(parseJson<{ state: string }>(st).state, 'running', 'the sandbox still runs');
  });

  t.test('metrics: Prometheus text with the host and the guest series', async (t) => {
    // Some traffic on the tap first, so its counters have something to count.
    await cli(['exec', id, ...C, '--', 'ping', '-c', '2', '-W', '5', net.gw4], { timeoutMs: 120_000 });
    const m = await cli(['metrics', id, ...C], { timeoutMs: 120_000 });
    t.equal(m.code, 0, `metrics exits 0 ${m.code === 0 ? '' : explain(m)}`);
    const { families, samples } = parsePrometheus(m.stdout);
    const one = (name: string, labels: Record<string, string>) =>
      samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
    for (const p of ['qemu', 'virtiofsd', 'supervisor']) {
      t.ok((one('kata_host_process_resident_memory_bytes', { process: p })?.value ?? 0) > 0, `host: ${p} RSS`);
      t.ok(one('kata_host_process_cpu_seconds', { process: p }), `host: ${p} CPU seconds`);
    }
    t.ok((one('kata_host_process_cpu_seconds', { process: 'qemu' })?.value ?? 0) > 0, 'QEMU has used CPU');
    const tap = sb.endpoints[0]?.tap ?? '';
    t.ok((one('kata_host_tap', { interface: tap, item: 'rx_packets' })?.value ?? 0) > 0, `host: packets from the VM on ${tap}`);
    t.ok((one('kata_guest_meminfo_bytes', { item: 'MemTotal' })?.value ?? 0) > 1024 * 1024 * 1024, "guest: MemTotal (Kata's 2048 MiB)");
    t.ok(one('kata_guest_load', { period: '1m' }), 'guest: load');
    t.ok(
      samples.some(
        (s) => s.name === 'kata_guest_netdev_stat' && s.labels.item === 'sent_packets' && s.labels.interface !== 'lo' && s.value > 0,
      ),
      'guest: interface counters (the ping left through the guest interface)',
    );
    t.equal(families.get('kata_guest_netdev_stat'), 'counter', 'counters are typed as counters');
    t.ok(
      samples.every((s) => s.labels.sandbox_id === id),
      'every series names the sandbox',
    );
    t.notOk(one('kata_metrics_scrape_errors', {}), 'no part failed to read');
  });

  t.test("the guest's console reaches the sandbox log with source guest", async (t) => {
    const file = join(rt.stateDir, 'logs', `${id}.log`);
    await waitFor(() => readFileSync(file, 'utf8').includes('"source":"guest"'), 30_000).catch(() => {});
    const lines = readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { source?: string; msg: string; pid: number });
    const guest = lines.filter((l) => l.source === 'guest');
    t.ok(
      guest.some((l) => /^kata-agent: ready on /.test(l.msg)),
      `the agent's own log line is there (${guest.length} guest lines)`,
    );
    t.ok(
      guest.every((l) => !l.msg.includes(String.fromCharCode(27))),
      'without terminal escapes',
    );
  });

  t.test('down leaves nothing', async (t) => {
    const d = await cli(['sandbox', 'down', id, ...C, '--json'], { timeoutMs: 120_000 });
    t.equal(d.code, 0, `down exits 0 ${d.code === 0 ? '' : explain(d)}`);
    t.same(
      await residue(rt, { id, pids, pod: { ns: net.pod, dev: net.ifname } }),
      [],
      'no process, mount, socket, state, tap or qdisc left',
    );
  });
});

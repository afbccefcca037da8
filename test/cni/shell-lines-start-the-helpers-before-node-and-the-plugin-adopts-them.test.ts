import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { shellBoot } from '../../cni/build/shell-boot.js';
import { run } from '../../host/exec.js';
import { helperArgv } from '../../host/netlink.js';
import { tempNetns } from '../helpers/netns.js';

/**
 * The kata-cni executable starts with shell lines (cni/build/shell-boot.ts) that start the call's
 * ip helper (and tc's subshell) before they exec Node; the plugin takes them over
 * (cni/inherited-helpers.ts). Run here with the real shell lines in front of a small script that
 * takes the helpers over and drives them through an adopting CoprocessNetlink, as kata-cni does:
 * both answer, with helperArgv's command lines, as children of the Node process started before
 * Node ran; no fd of theirs is left without close-on-exec (a later spawn would hold their pipes);
 * ip missing from PATH is E_EXEC_NOT_FOUND, as a spawn reports it; a KATA_CNI_EARLY that names
 * another process is ignored; VERSION and a relative CNI_NETNS start nothing.
 */
const DIST = dirname(dirname(dirname(fileURLToPath(import.meta.url))));
const dir = mkdtempSync(join(tmpdir(), 'krt-shell-boot-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

// What the boot's here-document runs in place of kata-cni's boot (CommonJS, as the boot is; the
// project's modules are ES modules, so they come by import()). It reports one JSON line.
const SCRIPT = `
const { readdirSync, readFileSync, readlinkSync } = require('node:fs');
const { spawnSync } = require('node:child_process');
(async () => {
const { takeInherited } = await import(${JSON.stringify(join(DIST, 'cni/inherited-helpers.js'))});
const { CoprocessNetlink } = await import(${JSON.stringify(join(DIST, 'host/netlink.js'))});
const out = { self: process.pid };
const h = takeInherited(process.env);
out.taken = h === undefined ? 'undefined' : h === null ? 'null' : 'yes';
out.envLeft = process.env.KATA_CNI_EARLY ?? null;
out.pipeFds = [3, 4, 5, 7].filter((fd) => { try { return readlinkSync('/proc/self/fd/' + fd).startsWith('pipe:'); } catch { return false; } });
// This process's fds on the helpers' pipes (their fds 0-2), each with its close-on-exec flag.
const pipes = (pids) => {
  const theirs = new Set(pids.flatMap((pid) => [0, 1, 2].map((fd) => readlinkSync('/proc/' + pid + '/fd/' + fd))));
  return readdirSync('/proc/self/fd').map(Number).flatMap((fd) => {
  try {
    if (!theirs.has(readlinkSync('/proc/self/fd/' + fd))) return [];
    const flags = parseInt(/flags:\\s+([0-7]+)/.exec(readFileSync('/proc/self/fdinfo/' + fd, 'latin1'))[1], 8);
    return [{ fd, cloexec: (flags & 0o2000000) !== 0 }];
  } catch { return []; }
  });
};
if (h) {
  // -1: gone (a helper that died before the shell exec'd Node may have been reaped by the shell).
  const ppid = (pid) => { try { return Number(readFileSync('/proc/' + pid + '/stat', 'latin1').split(') ')[1].split(' ')[1]); } catch { return -1; } };
  let tc;
  const adopt = (tool) => (tool === 'ip' ? h.ip : (tc = h.startTc()));
  const nl = new CoprocessNetlink(500, { ipDetails: true, adopt });
  try {
    out.ip = { pid: h.ip?.pid, args: h.ip?.spawnargs, ppid: h.ip && ppid(h.ip.pid) };
    out.preSent = h.ip?.preSent?.lines ?? null;
    // Long enough for ip to answer a read the shell sent; lo's MTU then changes (another process),
    // so an answer to that read tells itself from a read sent now.
    await new Promise((r) => setTimeout(r, 300));
    spawnSync('nsenter', ['--net=' + h.ns.path, 'ip', 'link', 'set', 'lo', 'mtu', '1234']);
    const first = (await nl.json('ip', h.ns, ['-details', 'link', 'show', 'dev', 'lo']))[0];
    out.link = first?.ifname;
    out.mtuFirst = first?.mtu;
    out.mtuNow = (await nl.json('ip', h.ns, ['-details', 'link', 'show', 'dev', 'lo']))[0]?.mtu;
    await nl.batch('tc', h.ns, ['qdisc add dev lo ingress']);
    out.qdisc = (await nl.json('tc', h.ns, ['qdisc', 'show', 'dev', 'lo', 'ingress']))[0]?.kind;
    out.tc = { pid: tc?.pid, args: tc?.spawnargs, ppid: tc && ppid(tc.pid), cmdline: tc && readFileSync('/proc/' + tc.pid + '/cmdline', 'latin1').split('\\0').filter(Boolean) };
    out.pipes = pipes([h.ip.pid, tc.pid]);
    const gone = new Promise((r) => h.ip.once('exit', (code, sig) => r([code, sig])));
    out.killed = h.ip.kill('SIGKILL');
    const hold = setTimeout(() => {}, 5000); // idle helpers hold no event loop
    out.exit = await gone;
    clearTimeout(hold);
    out.killedAgain = h.ip.kill('SIGKILL');
  } catch (e) {
    out.error = e.code ?? String(e);
  }
  await nl.close();
}
process.stdout.write(JSON.stringify(out) + '\\n');
})();
`;
const script = join(dir, 'script.cjs');
writeFileSync(script, SCRIPT);
const file = join(dir, 'kata-cni');
writeFileSync(file, `#!/bin/sh\n${shellBoot(`require(${JSON.stringify(script)});`, `'${process.execPath}'`)}`);
chmodSync(file, 0o755);

type Report = {
  self: number;
  taken: string;
  envLeft: string | null;
  pipeFds: number[];
  ip?: { pid: number; args: string[]; ppid: number };
  tc?: { pid: number; args: string[]; ppid: number; cmdline: string[] };
  link?: string;
  preSent?: string[] | null;
  mtuFirst?: number;
  mtuNow?: number;
  qdisc?: string;
  pipes?: { fd: number; cloexec: boolean }[];
  killed?: boolean;
  exit?: [number | null, string | null];
  killedAgain?: boolean;
  error?: string;
};

async function call(env: Record<string, string>, cmd: string[] = [file]): Promise<Report> {
  const r = await run(cmd[0]!, cmd.slice(1), { env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...env } });
  return JSON.parse(r.stdout) as Report;
}

t.test('ADD: ip and tc were started by the shell, answer with the expected command lines, children of the plugin', async (t) => {
  const ns = await tempNetns(t, 'shb');
  const r = await call({ CNI_COMMAND: 'ADD', CNI_NETNS: ns.path, CNI_IFNAME: 'lo' });
  t.equal(r.taken, 'yes', 'taken over');
  t.same(r.preSent, ['addr show dev lo'], "the shell sent ip the read of CNI_IFNAME, the plugin's first request");
  t.equal(r.mtuFirst, 65536, 'and its answer, read before Node listened, is the answer to that request');
  t.equal(r.mtuNow, 1234, 'the next read is sent and answered anew');
  t.equal(r.envLeft, null, 'KATA_CNI_EARLY is removed from the environment');
  t.equal(r.error, undefined);
  t.same(r.ip?.args, ['ip', ...helperArgv('ip', ns, true)[1]], "ip: helperArgv's command line (-n NAME)");
  t.equal(r.ip?.ppid, r.self, 'ip is a child of the plugin process (the shell that became it)');
  t.equal(r.link, 'lo', 'ip answered');
  t.equal(r.qdisc, 'ingress', 'tc answered, after its go line');
  t.same(r.tc?.args, ['tc', ...helperArgv('tc', ns, true)[1]]);
  t.same(r.tc?.cmdline, r.tc?.args, 'the pid the shell gave is the tc helper');
  t.equal(r.tc?.ppid, r.self, 'tc is a child of the plugin process too');
  t.equal((r.pipes ?? []).length, 6, "the plugin holds one end of each of the helpers' six pipes");
  t.same(
    (r.pipes ?? []).filter((p) => !p.cloexec),
    [],
    'every pipe fd is close-on-exec: nothing the plugin spawns later holds them',
  );
  t.equal(r.killed, true, 'ip killed by pid');
  t.same(r.exit, [null, 'SIGKILL'], 'its exit seen at EOF, with the signal sent');
  t.equal(r.killedAgain, false, 'an exited helper is not signalled again');
});

t.test('a namespace by path (not under /run/netns) runs the helpers through nsenter', async (t) => {
  const ns = await tempNetns(t, 'shb');
  // The same namespace, named by a path netnsRef does not read as a name.
  const path = `/proc/${process.pid}/root${ns.path}`;
  const r = await call({ CNI_COMMAND: 'DEL', CNI_NETNS: path });
  t.equal(r.taken, 'yes');
  t.equal(r.error, undefined);
  t.same(r.ip?.args, ['nsenter', `--net=${path}`, 'ip', '-force', '-json', '-details', '-batch', '-']);
  t.equal(r.link, 'lo');
  t.equal(r.preSent, null, 'DEL: no request is sent ahead');
  t.equal(r.mtuFirst, 1234, 'the first read is sent by the plugin');
  t.equal(r.qdisc, 'ingress');
});

t.test(
  'ADD with a CNI_IFNAME the plugin would refuse sends nothing ahead; a first request of other lines passes the sent one by',
  async (t) => {
    const ns = await tempNetns(t, 'shb');
    for (const ifname of ['a b', 'x;reboot', '..', 'sixteen-chars-ab']) {
      const r = await call({ CNI_COMMAND: 'ADD', CNI_NETNS: ns.path, CNI_IFNAME: ifname });
      t.equal(r.error, undefined, JSON.stringify(ifname));
      t.equal(r.preSent, null, `${JSON.stringify(ifname)}: nothing sent ahead`);
      t.equal(r.mtuFirst, 1234, `${JSON.stringify(ifname)}: the first read is the plugin's own`);
    }
    // CNI_IFNAME names another link than the script reads first: the sent read is answered and unused.
    const other = await call({ CNI_COMMAND: 'ADD', CNI_NETNS: ns.path, CNI_IFNAME: 'eth9' });
    t.same(other.preSent, ['addr show dev eth9']);
    t.equal(other.error, undefined, 'the failed read of eth9 fails nothing');
    t.equal(other.link, 'lo');
    t.equal(other.mtuFirst, 1234, 'the read of lo got its own answer');
  },
);

t.test('ip missing from PATH: E_EXEC_NOT_FOUND, as a spawn of a missing command reports', async (t) => {
  const ns = await tempNetns(t, 'shb');
  const empty = mkdtempSync(join(tmpdir(), 'krt-shell-boot-path-'));
  t.teardown(() => rmSync(empty, { recursive: true, force: true }));
  for (const command of ['CHECK', 'ADD']) {
    const r = await call({ CNI_COMMAND: command, CNI_NETNS: ns.path, CNI_IFNAME: 'lo', PATH: empty });
    t.equal(r.taken, 'yes', command);
    t.equal(r.error, 'E_EXEC_NOT_FOUND', `${command}: E_EXEC_NOT_FOUND (ADD: with the read sent ahead)`);
  }
});

t.test('VERSION and a relative CNI_NETNS start no helper; a KATA_CNI_EARLY of another process is ignored', async (t) => {
  const ns = await tempNetns(t, 'shb');
  t.equal((await call({ CNI_COMMAND: 'VERSION', CNI_NETNS: ns.path })).taken, 'null', 'VERSION: none');
  t.equal((await call({ CNI_COMMAND: 'ADD', CNI_NETNS: 'relative/ns' })).taken, 'null', 'relative path: none');
  const bad = await call({ CNI_COMMAND: 'ADD', CNI_NETNS: '/run/netns/krt bad!' });
  t.equal(bad.taken, 'null', 'a name the plugin refuses: not adopted');
  t.same(bad.pipeFds, [], 'and the inherited pipes are closed at once (EOF ends the helpers)');
  const stale = await call({ CNI_COMMAND: 'ADD', CNI_NETNS: ns.path, KATA_CNI_EARLY: `1 n 2 3` }, [process.execPath, script]);
  t.equal(stale.taken, 'undefined', 'not started by the shell lines: the value names another process, so Node starts its own');
  t.equal(stale.envLeft, null, 'and it is removed all the same');
});

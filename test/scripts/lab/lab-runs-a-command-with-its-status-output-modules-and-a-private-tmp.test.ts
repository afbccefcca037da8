import t from 'tap';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { REPO, runLab, waitNoLeftovers } from '../../helpers/lab.js';

t.test('one VM: output on the right streams, modules, host paths, a private /tmp, env, cwd, exit status', async (t) => {
  const tag = randomBytes(4).toString('hex');
  const hostFile = `/tmp/krt-lab-host-${tag}`;
  const guestFile = `/tmp/krt-lab-guest-${tag}`;
  writeFileSync(hostFile, `written on the host ${tag}\n`);
  t.teardown(() => {
    rmSync(hostFile, { force: true });
    rmSync(guestFile, { force: true });
  });
  const script = [
    'echo "to stdout"',
    'echo "to stderr" >&2',
    'echo "uname $(uname -r)"',
    'DM_DISABLE_UDEV=1 dmsetup targets | sed "s/^/target /"',
    'echo "lsmod $(lsmod | awk \'NR>1 {print $1}\' | grep -c "^dm_thin_pool$")"',
    `echo "host file: $(cat ${hostFile})"`,
    `echo "guest wrote" > ${guestFile} && echo "guest file: $(cat ${guestFile})"`,
    'echo "package: $(grep -c \'"name": "kata-resources"\' package.json)"',
    'echo "cwd $(pwd)"',
    'echo "env $KRT_LAB_VAR $HOME $(id -u)"',
    'for m in /proc /sys /dev /dev/pts /run /sys/fs/cgroup; do echo "mount $m $(awk -v m=$m \'$2 == m {print $3}\' /proc/mounts)"; done',
    'echo "lo $(cat /sys/class/net/lo/operstate) $(ip -o addr show lo | grep -c 127.0.0.1)"',
    'exit 7',
  ].join('\n');
  const r = await runLab(t, ['--modules', 'dm_mod,dm_thin_pool', '--env', 'KRT_LAB_VAR=from-the-caller', '--', 'sh', '-c', script], {
    cwd: REPO,
  });
  t.equal(r.code, 7, `the command's exit status comes back (stderr: ${r.stderr})`);
  const out = r.stdout.split('\n');
  t.ok(out.includes('to stdout'), 'stdout relayed');
  t.notOk(out.includes('to stderr'), 'stderr is not mixed into stdout');
  t.match(r.stderr, /^to stderr$/m, 'stderr relayed on stderr');
  t.match(r.stdout, /^uname \d+\.\d+\.\d+-\d+-amd64$/m, "Debian's kernel, not the host's");
  t.match(r.stdout, /^target thin-pool\s+v/m, 'dm_thin_pool loaded: dmsetup targets lists thin-pool');
  t.match(r.stdout, /^lsmod 1$/m);
  t.match(r.stdout, new RegExp(`^host file: written on the host ${tag}$`, 'm'), 'a host file is visible at its path');
  t.match(r.stdout, /^guest file: guest wrote$/m, 'the guest can write to /tmp');
  t.notOk(existsSync(guestFile), 'the write to /tmp did not reach the host');
  t.equal(readFileSync(hostFile, 'utf8'), `written on the host ${tag}\n`, 'the host file is unchanged');
  t.match(r.stdout, /^package: 1$/m, 'the checkout is visible');
  t.match(r.stdout, new RegExp(`^cwd ${REPO}$`, 'm'), "the caller's cwd");
  t.match(r.stdout, /^env from-the-caller \/root 0$/m, '--env reaches the command, as root');
  for (const [m, fs] of [
    ['/proc', 'proc'],
    ['/sys', 'sysfs'],
    ['/dev', 'devtmpfs'],
    ['/dev/pts', 'devpts'],
    ['/run', 'tmpfs'],
    ['/sys/fs/cgroup', 'cgroup2'],
  ])
    t.match(r.stdout, new RegExp(`^mount ${m} ${fs}$`, 'm'), `${m} is ${fs}`);
  t.match(r.stdout, /^lo (unknown|up) 1$/m, 'loopback is up');
  t.ok(r.runDir, 'lab.sh --verbose named its run directory');
  t.same(await waitNoLeftovers(r.runDir!), [], 'nothing of the VM is left');
});

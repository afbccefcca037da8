/**
 * The kernel lab (scripts/lab.sh): run a command as root in a QEMU VM booting Debian's own kernel,
 * with every module loadable, the host's root visible read-only at the same paths under a
 * throw-away overlay, and the caller's cwd.
 *
 *   lab.sh [--modules m1,m2,...] [--mem MiB] [--cpus N] [--timeout S] [--boot-timeout S]
 *          [--env K=V | --env K]... [--verbose] -- CMD [ARGS...]
 *
 * Exit status: CMD's own; 124 when --timeout passed; 125 when the lab failed (boot, a module that
 * does not load, virtiofsd); 2 for a usage error. Every lab message starts with "lab.sh:".
 */
import { parseArgs } from 'node:util';
import { isKataError } from '../../host/errors.js';
import { rootLogger, silentLogger } from '../../host/log.js';
import { ensureLabKit } from './kit.js';
import { EXIT_LAB_FAILED, runLab } from './vm.js';

const USAGE = `usage: scripts/lab.sh [--modules m1,m2,...] [--mem MiB] [--cpus N] [--timeout S] [--boot-timeout S]
                     [--env K=V | --env K]... [--verbose] -- CMD [ARGS...]

Runs CMD as root in a QEMU (TCG) VM on Debian's linux-image-amd64 with every module available:
the host's root is the read-only lower layer of an overlay on a tmpfs (host paths are visible at
the same place, writes stay in the VM), the cwd is the caller's, /proc /sys /dev /dev/pts /run
cgroup2 are mounted, lo is up. stdout and stderr are relayed live; stdin is /dev/null.

  --modules LIST      modprobe these first (comma-separated), e.g. dm_mod,dm_thin_pool
  --mem MiB           guest memory (default 2048; the overlay's tmpfs gets half)
  --cpus N            guest CPUs (default 2)
  --timeout S         stop the VM after S seconds in all (default 1800): exit 124
  --boot-timeout S    give up when the VM is not up after S seconds (default 300): exit 125
  --env K=V, --env K  set K in CMD's environment (K alone: the caller's value); repeatable.
                      CMD gets PATH (the caller's), HOME=/root, USER, LOGNAME, LANG, TERM=dumb and these.
  --verbose           lab progress on stderr

Exit status: CMD's; 124 timeout; 125 the lab failed (the message says why); 2 usage error.`;

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

function fail(msg: string): never {
  process.stderr.write(`lab.sh: ${msg}\n${USAGE}\n`);
  process.exit(2);
}

function positive(name: string, v: string | undefined, dflt: number, max: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n <= 0 || n > max) fail(`--${name} must be a whole number from 1 to ${max} (got "${v}")`);
  return n;
}

async function main(argv: string[]): Promise<number> {
  const dash = argv.indexOf('--');
  const head = dash >= 0 ? argv.slice(0, dash) : argv;
  const cmd = dash >= 0 ? argv.slice(dash + 1) : [];
  if (head.includes('--help') || head.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  let values: Record<string, string | boolean | string[] | undefined>;
  try {
    ({ values } = parseArgs({
      args: head,
      strict: true,
      allowPositionals: false,
      options: {
        modules: { type: 'string' },
        mem: { type: 'string' },
        cpus: { type: 'string' },
        timeout: { type: 'string' },
        'boot-timeout': { type: 'string' },
        env: { type: 'string', multiple: true },
        verbose: { type: 'boolean' },
      },
    }));
  } catch (e) {
    fail((e as Error).message.split('\n')[0]!);
  }
  if (cmd.length === 0) fail('no command: put it after "--"');
  const modules = String(values.modules ?? '')
    .split(',')
    .map((m) => m.trim())
    .filter(Boolean);
  for (const m of modules) if (!/^[A-Za-z0-9_-]+$/.test(m)) fail(`--modules: "${m}" is not a module name`);
  const env: Record<string, string> = {
    PATH: process.env.PATH || DEFAULT_PATH,
    HOME: '/root',
    USER: 'root',
    LOGNAME: 'root',
    LANG: 'C.UTF-8',
    TERM: 'dumb',
  };
  for (const e of (values.env as string[] | undefined) ?? []) {
    const i = e.indexOf('=');
    const k = i >= 0 ? e.slice(0, i) : e;
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) fail(`--env: "${k}" is not a variable name`);
    if (i >= 0) env[k] = e.slice(i + 1);
    else if (process.env[k] !== undefined) env[k] = process.env[k]!;
  }
  const verbose = values.verbose === true;
  const note = (m: string): void => {
    process.stderr.write(`lab.sh: ${m}\n`);
  };
  try {
    const kit = await ensureLabKit(note);
    return await runLab(kit, {
      modules,
      memMiB: positive('mem', values.mem as string | undefined, 2048, 65536),
      cpus: positive('cpus', values.cpus as string | undefined, 2, 64),
      timeoutS: positive('timeout', values.timeout as string | undefined, 1800, 7 * 86400),
      bootTimeoutS: positive('boot-timeout', values['boot-timeout'] as string | undefined, 300, 86400),
      env,
      cwd: process.cwd(),
      argv: cmd,
      stdout: process.stdout,
      stderr: process.stderr,
      note,
      verbose,
      log: process.env.KATA_LOG_LEVEL ? rootLogger() : silentLogger(),
    });
  } catch (e) {
    note(isKataError(e) ? `${e.code}: ${e.message}` : ((e as Error).stack ?? String(e)));
    return EXIT_LAB_FAILED;
  }
}

process.exitCode = await main(process.argv.slice(2));

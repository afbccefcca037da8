/**
 * kata-resources: the command line of the runtime core. Commands are values (cli/command.ts) in the
 * modules of cli/commands/; this file only dispatches over their table. Results go to stdout (text,
 * or one JSON object with --json); progress and logs to stderr. main.ts starts it (from its bundle
 * when that is fresh).
 */
import { KataError, isKataError } from '../../host/errors.js';
import { rootLogger } from '../../host/log.js';
import { mark } from '../../host/marks.js';
import { commandHelp, parseInvocation, usageError, usageLine, type CliIo, type Command } from './command.js';
import { DEVMAPPER_COMMANDS } from './commands/devmapper.js';
import { HOST_COMMANDS } from './commands/host.js';
import { INFO_COMMANDS } from './commands/info.js';
import { NBD_COMMANDS } from './commands/nbd.js';
import { NETWORK_COMMANDS } from './commands/network.js';
import { SANDBOX_COMMANDS } from './commands/sandbox.js';
import { VOLUME_COMMANDS } from './commands/volume.js';
import { printable } from './print.js';

const COMMANDS: readonly Command[] = [
  ...SANDBOX_COMMANDS,
  ...NETWORK_COMMANDS,
  ...VOLUME_COMMANDS,
  ...NBD_COMMANDS,
  ...HOST_COMMANDS,
  ...DEVMAPPER_COMMANDS,
  ...INFO_COMMANDS,
];

const out = (s: string): void => {
  process.stdout.write(`${s}\n`);
};
const err = (s: string): void => {
  process.stderr.write(`${s}\n`);
};

function overview(): string {
  return [
    'kata-resources: sandbox resources for lightweight VMs (network endpoints, virtio-fs, QEMU)',
    '',
    'Usage:',
    ...COMMANDS.map((c) => `  ${usageLine(c)}`),
    '',
    '  kata-resources --version | --show-default-config-paths',
    '',
    'Every command takes --help. Logs: KATA_LOG_LEVEL (default warn), KATA_LOG_FILE.',
    'Configuration: --config FILE, else KATA_RESOURCES_CONFIG, else KATA_CONF_FILE, else the first default path that exists.',
    'Exit codes: 0 success, 1 failure (the message names the error code, see README), 2 usage error.',
  ].join('\n');
}

/** The command named by the longest prefix of argv, and the words after it. */
function findCommand(argv: readonly string[]): { cmd: Command; rest: string[] } | undefined {
  let best: Command | undefined;
  for (const c of COMMANDS) {
    if (c.words.every((w, i) => argv[i] === w) && (!best || c.words.length > best.words.length)) best = c;
  }
  return best ? { cmd: best, rest: argv.slice(best.words.length) } : undefined;
}

async function dispatch(argv: string[]): Promise<number> {
  const first = argv[0];
  if (first === undefined || first === '--help' || first === '-h' || first === 'help') {
    out(overview());
    return 0;
  }
  if (first === '--version' || first === '-v') {
    const { versionLine } = await import('../build-info.js');
    out(`kata-resources ${versionLine()}`);
    return 0;
  }
  if (first === '--show-default-config-paths' || first === '--kata-show-default-config-paths') {
    const { DEFAULT_CONFIG_PATHS } = await import('../config/defaults.js');
    for (const p of DEFAULT_CONFIG_PATHS) out(p);
    return 0;
  }
  const found = findCommand(argv);
  if (!found) {
    // A group word alone (or with --help) lists the group's commands.
    const group = COMMANDS.filter((c) => c.words[0] === first);
    const second = argv[1];
    if (group.length > 0 && (second === undefined || second === '--help' || second === '-h')) {
      out(`kata-resources ${first} ${group.map((c) => c.words.slice(1).join(' ')).join('|')}\n`);
      for (const c of group) out(`  ${usageLine(c)}`);
      return 0;
    }
    const words = group.length > 0 && second !== undefined ? `${first} ${second}` : first;
    throw usageError(`unknown command "${words}" (see kata-resources --help)`);
  }
  const inv = parseInvocation(found.cmd, found.rest);
  if (inv === 'help') {
    out(commandHelp(found.cmd));
    return 0;
  }
  // Text output is escaped (print.ts); the --json object goes out as it is.
  const text = (s: string): void => out(printable(s));
  const io: CliIo = { out: inv.values.json === true ? out : text, err, progress: (m) => err(`.. ${printable(m)}`), log: rootLogger() };
  return found.cmd.run(inv, io);
}

export async function main(argv: string[]): Promise<number> {
  mark('cli.main');
  try {
    return await dispatch(argv);
  } catch (e) {
    const k = isKataError(e) ? e : new KataError('E_INTERNAL', (e as Error).stack ?? String(e));
    if (argv.includes('--json')) out(JSON.stringify({ error: { code: k.code, message: k.message } }));
    err(`kata-resources: ${k.code}: ${printable(k.message)}`);
    return k.details.usage ? 2 : 1;
  }
}

// A closed stdout (e.g. `| head`) ends the output, not the process with an unhandled EPIPE.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
});

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});

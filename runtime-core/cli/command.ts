/**
 * The CLI's command contract. Each command is a value (words, options, positionals, help, run) in
 * a module of commands/; main.ts dispatches over the table of all of them. Arguments are parsed by
 * node:util parseArgs in strict mode: an unknown option, a missing value or a positional the
 * command does not take is a usage error (exit 2), never silently ignored.
 */
import { parseArgs } from 'node:util';
import { KataError } from '../../host/errors.js';
import type { Logger } from '../../host/log.js';

export interface OptionSpec {
  type: 'string' | 'boolean';
  /** Placeholder in the help text (string options), e.g. "FILE". */
  value?: string;
  short?: string;
  /** May be given more than once (the value is then an array). */
  multiple?: boolean;
  describe: string;
}

interface PositionalSpec {
  name: string;
  optional?: boolean;
  /** Takes every remaining positional (last only). */
  variadic?: boolean;
}

export interface Invocation {
  values: Record<string, string | boolean | string[] | undefined>;
  /** Positionals, checked against the command's `args`. */
  args: string[];
  /** Words after `--` (only for commands that declare `rest`). */
  rest: string[];
}

export interface CliIo {
  out(line: string): void;
  err(line: string): void;
  /** A progress line on stderr (".. msg"). */
  progress(msg: string): void;
  log: Logger;
}

export interface Command {
  /** The words that select it, e.g. ["sandbox", "up"]. */
  words: readonly string[];
  /** What follows the words in the usage line, e.g. "ID [--json]". */
  synopsis: string;
  /** More usage lines of the same command (alternative forms), without the "kata-resources" prefix. */
  altSynopsis?: readonly string[];
  description: string;
  options?: Record<string, OptionSpec>;
  args?: readonly PositionalSpec[];
  /** Name of what follows `--` (e.g. "CMD [ARGS...]"); required when set, unless restOptional says otherwise. */
  rest?: string;
  restOptional?: (inv: Invocation) => boolean;
  run(inv: Invocation, io: CliIo): Promise<number>;
}

/** A usage error: exit code 2. */
export function usageError(message: string): KataError {
  return new KataError('E_INVALID_ARGUMENT', message, { usage: true });
}

const PROG = 'kata-resources';

export function usageLine(c: Command): string {
  return `${PROG} ${c.words.join(' ')}${c.synopsis ? ` ${c.synopsis}` : ''}`;
}

/** The --help text of one command: usage, description, options. */
export function commandHelp(c: Command): string {
  const lines = [usageLine(c), ...(c.altSynopsis ?? []).map((s) => `${PROG} ${s}`), '', c.description];
  const opts = Object.entries(c.options ?? {});
  if (opts.length > 0) {
    lines.push('', 'Options:');
    const cells = opts.map(([name, o]) => [
      `${o.short ? `-${o.short}, ` : ''}--${name}${o.type === 'string' ? ` ${o.value ?? 'VALUE'}` : ''}`,
      o.describe,
    ]);
    const w = Math.max(...cells.map(([a]) => a!.length));
    for (const [a, b] of cells) lines.push(`  ${a!.padEnd(w)}  ${b}`);
  }
  return lines.join('\n');
}

/** Parse argv (the words after the command's own words) for a command. Throws usage errors. */
export function parseInvocation(c: Command, argv: readonly string[]): Invocation | 'help' {
  const dash = argv.indexOf('--');
  const head = dash >= 0 ? argv.slice(0, dash) : [...argv];
  const rest = dash >= 0 ? argv.slice(dash + 1) : [];
  if (head.includes('--help') || head.includes('-h')) return 'help';
  const cmd = `${PROG} ${c.words.join(' ')}`;
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {};
  for (const [name, o] of Object.entries(c.options ?? {})) {
    options[name] = { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: head, options, strict: true, allowPositionals: true });
  } catch (e) {
    throw usageError(`${cmd}: ${describeParseError(e as Error & { code?: string })} (see ${cmd} --help)`);
  }
  for (const [name, o] of Object.entries(c.options ?? {})) {
    const v = parsed.values[name];
    if (o.type === 'string' && (v === '' || (Array.isArray(v) && v.includes('')))) throw usageError(`${cmd}: --${name} needs a value`);
  }
  const specs = c.args ?? [];
  const args = parsed.positionals;
  const required = specs.filter((s) => !s.optional).length;
  const variadic = specs.some((s) => s.variadic);
  if (args.length < required) {
    const missing = specs[args.length]!;
    throw usageError(`${cmd} needs ${missing.name === 'ID' ? 'a sandbox ID' : missing.name} (usage: ${usageLine(c)})`);
  }
  if (!variadic && args.length > specs.length) {
    throw usageError(`${cmd}: unexpected argument "${args[specs.length]}" (usage: ${usageLine(c)})`);
  }
  if (c.rest === undefined && dash >= 0) throw usageError(`${cmd} takes no "--" (usage: ${usageLine(c)})`);
  const inv = { values: parsed.values as Invocation['values'], args, rest };
  if (c.rest !== undefined && rest.length === 0 && !c.restOptional?.(inv)) throw usageError(`usage: ${usageLine(c)}`);
  return inv;
}

function describeParseError(e: Error & { code?: string }): string {
  // node:util's messages: "Unknown option '--bogus'. ..." / "Option '--id <value>' argument missing"
  const unknown = /Unknown option '([^']+)'/.exec(e.message);
  if (unknown) return `unknown option ${unknown[1]}`;
  const missing = /Option '(-\w, )?--([\w-]+)/.exec(e.message);
  if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && missing) return `--${missing[2]} needs a value`;
  return e.message;
}

/** A string option's value (undefined when not given). */
export function str(inv: Invocation, name: string): string | undefined {
  const v = inv.values[name];
  return typeof v === 'string' ? v : undefined;
}

export function flag(inv: Invocation, name: string): boolean {
  return inv.values[name] === true;
}

/** A positive integer option (e.g. a timeout in ms), or undefined; a usage error names a bad one. */
export function intOption(inv: Invocation, name: string, c: Command, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = str(inv, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n <= 0 || n > max) {
    throw usageError(`${PROG} ${c.words.join(' ')}: --${name} must be a positive integer up to ${max} (got "${v}")`);
  }
  return n;
}

/** Options most commands share. */
export const CONFIG_OPTION: OptionSpec = {
  type: 'string',
  value: 'FILE',
  describe: 'Kata-style configuration (default /etc/kata-resources/configuration.toml if present)',
};
export const JSON_OPTION: OptionSpec = { type: 'boolean', describe: 'print the result as one JSON object' };

import { KataError } from '../../host/errors.js';

/** A parsed command line: positionals, flags (--x, --x=v, --x v for known value flags) and the words after "--". */
export interface ParsedArgs {
  positionals: string[];
  flags: Record<string, string | true>;
  rest: string[];
}

/**
 * Parse argv. `valueFlags` lists the flags that take a value; any other --flag is boolean. An
 * unknown flag is an error naming it (and the command's --help).
 */
export function parseArgs(
  argv: readonly string[],
  spec: { valueFlags?: readonly string[]; boolFlags?: readonly string[]; command: string },
): ParsedArgs {
  const valueFlags = new Set(spec.valueFlags ?? []);
  const boolFlags = new Set([...(spec.boolFlags ?? []), 'help', 'json']);
  const out: ParsedArgs = { positionals: [], flags: {}, rest: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      out.rest = argv.slice(i + 1);
      break;
    }
    if (a === '-h') {
      out.flags.help = true;
      continue;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      if (valueFlags.has(name)) {
        const v = eq >= 0 ? a.slice(eq + 1) : argv[++i];
        if (v === undefined || v === '')
          throw new KataError('E_INVALID_ARGUMENT', `${spec.command}: --${name} needs a value`, { usage: true });
        out.flags[name] = v;
      } else if (boolFlags.has(name) && eq < 0) {
        out.flags[name] = true;
      } else {
        throw new KataError('E_INVALID_ARGUMENT', `${spec.command}: unknown option ${a} (see ${spec.command} --help)`, { usage: true });
      }
      continue;
    }
    out.positionals.push(a);
  }
  return out;
}

export function stringFlag(p: ParsedArgs, name: string): string | undefined {
  const v = p.flags[name];
  return typeof v === 'string' ? v : undefined;
}

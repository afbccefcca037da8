import { JSON_OPTION, CONFIG_OPTION, flag, str, usageError, type Command } from '../command.js';

const env: Command = {
  words: ['env'],
  synopsis: '[--config FILE] [--json]',
  description:
    'The effective configuration after defaults (as TOML that loads back to the same configuration), where each\n' +
    'value came from, the Kata settings that have no effect here and why, versions, the guest kit and the host\n' +
    '(like `kata-runtime env`). Nothing is built or started.',
  options: { config: CONFIG_OPTION, json: JSON_OPTION },
  async run(inv, io) {
    const { environment } = await import('../env.js');
    const e = await environment(str(inv, 'config'), io.log);
    if (flag(inv, 'json')) io.out(JSON.stringify(e));
    else {
      const { stringify } = await import('smol-toml');
      io.out(stringify(e));
    }
    return 0;
  },
};

const version: Command = {
  words: ['version'],
  synopsis: '[--json]',
  description: 'The version and the commit this build was made from (also: kata-resources --version).',
  options: { json: JSON_OPTION },
  async run(inv, io) {
    const { buildInfo, versionLine } = await import('../../build-info.js');
    const b = buildInfo();
    io.out(
      flag(inv, 'json') ? JSON.stringify({ ...b, node: process.version }) : `kata-resources ${versionLine(b)}\n  node ${process.version}`,
    );
    return 0;
  },
};

const metrics: Command = {
  words: ['metrics'],
  synopsis: 'ID',
  description:
    "The sandbox's metrics in Prometheus text format (like `kata-runtime metrics`): CPU seconds and resident\n" +
    "memory of QEMU, virtiofsd and the supervisor, the counters of each tap on the host; the guest's memory,\n" +
    'load and interface counters through the agent. A part that cannot be read is counted in\n' +
    'kata_metrics_scrape_errors{part} and left out.',
  options: { config: CONFIG_OPTION },
  args: [{ name: 'ID' }],
  async run(inv, io) {
    const { sandboxMetricsText } = await import('../sandbox-commands.js');
    io.out((await sandboxMetricsText(inv.args[0]!, str(inv, 'config'), io.log)).trimEnd());
    return 0;
  },
};

const agent: Command = {
  words: ['agent'],
  synopsis: 'ID METHOD [JSON|FILE|-] [--force]',
  description:
    "Send one request to the sandbox's guest agent and print its answer as JSON (for learning and debugging\n" +
    'the agent protocol). METHOD is an agent method (Version, ListInterfaces, ListRoutes, ListMounts,\n' +
    'ListContainers, Check, Exec ...); its params are inline JSON ({...}), a file, or - for stdin (default {}).\n' +
    'Methods that change what the supervisor manages (network, mounts, processes, Shutdown) need --force.',
  options: { config: CONFIG_OPTION, force: { type: 'boolean', describe: 'also send methods that change what the supervisor manages' } },
  args: [{ name: 'ID' }, { name: 'METHOD' }, { name: 'JSON', optional: true }],
  async run(inv, io) {
    const { agentRequest } = await import('../sandbox-commands.js');
    const src = inv.args[2];
    let params: unknown;
    if (src !== undefined) {
      if (src.trimStart().startsWith('{')) {
        try {
          params = JSON.parse(src);
        } catch (e) {
          throw usageError(`the params are not JSON (${(e as Error).message})`);
        }
      } else {
        const { readJsonInput } = await import('../input.js');
        params = await readJsonInput(src);
      }
    }
    const r = await agentRequest(
      inv.args[0]!,
      { method: inv.args[1]!, ...(params !== undefined ? { params } : {}), force: flag(inv, 'force') },
      str(inv, 'config'),
      io.log,
    );
    io.out(JSON.stringify(r));
    return 0;
  },
};

export const INFO_COMMANDS: readonly Command[] = [env, version, metrics, agent];

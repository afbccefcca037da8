import { JSON_OPTION, flag, intOption, type Command } from '../command.js';

const probe: Command = {
  words: ['nbd', 'probe'],
  synopsis: 'URI [--timeout MS] [--json]',
  description:
    'Probe an NBD export without opening it for I/O: size, transmission flags (decoded), read-only, block sizes,\n' +
    'export name and description, whether structured replies are available, and the exports the server lists.\n' +
    '  URI  nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH (nbds:// is refused: no TLS)',
  options: {
    timeout: { type: 'string', value: 'MS', describe: 'give up after MS milliseconds (default 30000)' },
    json: JSON_OPTION,
  },
  args: [{ name: 'URI' }],
  async run(inv, io) {
    const timeoutMs = intOption(inv, 'timeout', probe, 3_600_000);
    const { formatProbe, probeNbd } = await import('../../../nbd/probe.js');
    const p = await probeNbd(inv.args[0]!, timeoutMs ? { timeoutMs } : {});
    io.out(flag(inv, 'json') ? JSON.stringify(p) : formatProbe(p).join('\n'));
    return 0;
  },
};

export const NBD_COMMANDS: readonly Command[] = [probe];

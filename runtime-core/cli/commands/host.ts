import { CONFIG_OPTION, JSON_OPTION, flag, intOption, str, type Command } from '../command.js';

const exec: Command = {
  words: ['exec'],
  synopsis: 'ID [--timeout MS] -- CMD [ARGS...]',
  description: "Run a command in the guest's root environment through the agent; relays its output and exit code.",
  options: {
    timeout: { type: 'string', value: 'MS', describe: 'kill the command after MS milliseconds (default 30000)' },
    config: CONFIG_OPTION,
  },
  args: [{ name: 'ID' }],
  rest: 'CMD [ARGS...]',
  async run(inv, io) {
    const timeout = intOption(inv, 'timeout', exec, 24 * 3600 * 1000);
    const { sandboxExec } = await import('../sandbox-commands.js');
    const r = await sandboxExec(inv.args[0]!, inv.rest, str(inv, 'config'), io.log, timeout);
    process.stdout.write(r.stdout);
    process.stderr.write(r.stderr);
    return r.exitCode;
  },
};

const check: Command = {
  words: ['check'],
  synopsis: '[--config FILE] [--json]',
  description:
    'Host capabilities: tools, QEMU, virtiofsd, /dev/net/tun, /dev/vhost-net, KVM (probed), kernel features\n' +
    '(tried in a throw-away namespace). Each failure comes with a fix. Exit 1 when a required feature is missing.',
  options: { config: CONFIG_OPTION, json: JSON_OPTION },
  async run(inv, io) {
    const { hostCheck, formatCheck } = await import('../../host-check.js');
    const { loadConfig } = await import('../../config/load-config.js');
    const cfg = loadConfig(str(inv, 'config'), { log: io.log, checkFiles: false });
    const { kvmProbe } = await import('../../hypervisor/qemu/accel.js');
    const items = await hostCheck({
      qemuPath: cfg.hypervisor.path,
      virtiofsdPath: cfg.hypervisor.virtioFsDaemon,
      kvmProbe: () => kvmProbe(cfg.hypervisor.path),
    });
    io.out(flag(inv, 'json') ? JSON.stringify(items) : formatCheck(items));
    return items.some((i) => !i.ok && i.severity === 'fail') ? 1 : 0;
  },
};

const demo: Command = {
  words: ['demo'],
  synopsis: '[--config FILE] [--keep]',
  description:
    'On this machine: a pod namespace with a veth as a CNI plugin would make it, a sandbox on the embedded\n' +
    'guest, what the guest sees, a ping from the guest to the host side, teardown, and a check that nothing is left.',
  options: { config: CONFIG_OPTION, keep: { type: 'boolean', describe: 'leave the sandbox running' } },
  async run(inv, io) {
    const { demo: run } = await import('../demo.js');
    const cfg = str(inv, 'config');
    const ok = await run(io.out, io.progress, io.log, { ...(cfg ? { config: cfg } : {}), keep: flag(inv, 'keep') });
    return ok ? 0 : 1;
  },
};

const guestKit: Command = {
  words: ['guest-kit'],
  synopsis: '[--quiet] [--json]',
  description:
    "Build (once; then cached) the embedded default guest: Debian's kernel (uncompressed for a fast PVH boot), an\n" +
    "initramfs, and the rootfs image (osbuilder's NVDIMM layout) with node and the guest agent. Prints its paths\n" +
    'and whether it was built or reused (--json: "outcome": "built" | "reused").',
  options: { quiet: { type: 'boolean', describe: 'no progress lines' }, json: JSON_OPTION },
  async run(inv, io) {
    const { ensureGuestKit } = await import('../../guest-kit/index.js');
    const kit = await ensureGuestKit(flag(inv, 'quiet') ? {} : { onProgress: io.progress });
    if (flag(inv, 'json')) io.out(JSON.stringify(kit));
    else
      io.out(
        `guest kit ${kit.hash} (${kit.outcome})\n  kernel ${kit.kernel} (${kit.kernelVersion}${kit.pvh ? ', PVH' : ''})\n  initrd ${kit.initrd}\n  rootfs ${kit.rootfs}`,
      );
    return 0;
  },
};

export const HOST_COMMANDS: readonly Command[] = [exec, check, demo, guestKit];

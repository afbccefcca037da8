import type { Logger } from '../../host/log.js';
import type { FaultHook } from '../../host/plugin.js';
import { QemuHypervisor } from '../hypervisor/qemu/driver.js';
import type { VmRecord } from '../hypervisor/types.js';
import type { RunningVm, VmDriver, VmStartRequest } from './vm-port.js';

/** The QEMU driver as the sandbox assembly uses it. */
export function qemuVmDriver(opts: { faults?: FaultHook } = {}): VmDriver {
  return {
    async start(req: VmStartRequest): Promise<RunningVm> {
      const hv = new QemuHypervisor(opts.faults ? { faults: opts.faults } : {});
      await hv.start(
        {
          sandboxId: req.sandboxId,
          config: req.config.hypervisor,
          kernel: req.kernel,
          initrd: req.initrd,
          image: req.image,
          kernelParams: req.kernelParams,
          devices: req.devices,
          runDir: req.runDir,
          ...(req.netns ? { netns: req.netns } : {}),
          ...(req.config.agent.enableDebug ? { agentDebug: true } : {}),
        },
        { log: req.log, accelCacheDir: req.config.runtime.stateDir },
      );
      return {
        hypervisor: hv,
        pid: hv.pid!,
        agentSocket: hv.agentSocket!,
        record: () => hv.record(),
        stop: () => hv.stop(),
        on: (_e, fn) => {
          hv.on('exit', (x) => fn({ code: x.code, signal: x.signal, expected: x.expected }));
        },
      };
    },
    recover: (rec: VmRecord, log: Logger) => QemuHypervisor.recover(rec, log),
  };
}

import type { Attached, FaultHook, PluginContext, ResourcePlugin } from '../../host/plugin.js';
import { KataError } from '../../host/errors.js';
import { hypervisorDriver } from '../hypervisor/drivers.js';
import type { Hypervisor, HypervisorDriver, VmRecord, VmResources } from '../hypervisor/hypervisor.js';

/**
 * The VM as a sandbox resource: attach starts it with the other resources' device specs cold-plugged,
 * detach stops it, recover stops a VM known only from its record (through the driver named in it).
 * One object per sandbox: it holds the live hypervisor for hotplug.
 */
export interface VmConfig {
  resources: VmResources;
  driverConfig: unknown;
  /** Driver cache directory (the accelerator probe). */
  cacheDir?: string;
}

export class VmResource implements ResourcePlugin<'vm', VmConfig, VmRecord> {
  readonly kind = 'vm' as const;
  private hv: Hypervisor | undefined;

  constructor(
    private readonly driver: HypervisorDriver,
    private readonly opts: { faults?: FaultHook } = {},
  ) {}

  /** The running hypervisor (hotplug); E_STATE when there is none. */
  get hypervisor(): Hypervisor {
    if (!this.hv) throw new KataError('E_STATE', 'the sandbox has no running VM');
    return this.hv;
  }

  get started(): Hypervisor | undefined {
    return this.hv;
  }

  async attach(ctx: PluginContext, config: VmConfig): Promise<Attached<VmRecord>> {
    const hv = this.driver.create(this.opts.faults ? { faults: this.opts.faults } : {});
    await hv.start(
      {
        sandboxId: ctx.sandboxId,
        resources: config.resources,
        driverConfig: config.driverConfig,
        runDir: ctx.runDir,
        ...(ctx.netns ? { netns: ctx.netns } : {}),
      },
      { log: ctx.log, ...(config.cacheDir ? { cacheDir: config.cacheDir } : {}) },
    );
    this.hv = hv;
    return { kind: 'vm', resources: hv.record(), devices: [], guest: {} };
  }

  async detach(ctx: PluginContext, attached: Attached<VmRecord>): Promise<void> {
    if (this.hv) await this.hv.stop();
    await this.recover(ctx, attached);
  }

  /** A start interrupted before its record was journalled: the VMM runs with pdeathsig, so it died with its starter; its sockets are in the sandbox directory. */
  async sweep(): Promise<void> {}

  recover(ctx: PluginContext, attached: Attached<VmRecord>): Promise<void> {
    return hypervisorDriver(attached.resources.kind).recover(attached.resources, ctx.log);
  }
}

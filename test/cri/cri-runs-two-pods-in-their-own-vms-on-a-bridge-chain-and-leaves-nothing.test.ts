/**
 * Kubernetes' path with the conflist [bridge + host-local]: CRI made the pod's veth, the shim makes
 * the VM's tap and redirect itself (as Kata does). See helpers/two-pods.ts for what is checked.
 */
import t from 'tap';
import { containerdUnavailable } from '../cni/helpers/containerd.js';
import { guestKitOrSkip } from '../helpers/runtime-core.js';
import { twoPods } from './helpers/two-pods.js';

const { skip: noKit } = await guestKitOrSkip();
const skip = containerdUnavailable() ?? noKit;

t.test('CRI, [bridge, host-local]: two pods in two VMs, logs, ExecSync, exit codes, sizing, cgroups; nothing left', { skip }, (t) =>
  twoPods(t, false),
);

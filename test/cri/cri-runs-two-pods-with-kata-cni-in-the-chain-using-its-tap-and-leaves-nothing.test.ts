/**
 * Kubernetes' path with the conflist [bridge + host-local + kata-cni]: kata-cni made the tap and its
 * redirects already; the shim recognises the attachment and hands that tap to the VM instead of
 * attaching twice, and CRI's CNI DEL through kata-cni removes it. See helpers/two-pods.ts.
 */
import t from 'tap';
import { containerdUnavailable } from '../cni/helpers/containerd.js';
import { guestKitOrSkip } from '../helpers/runtime-core.js';
import { twoPods } from './helpers/two-pods.js';

const { skip: noKit } = await guestKitOrSkip();
const skip = containerdUnavailable() ?? noKit;

t.test("CRI, [bridge, host-local, kata-cni]: the VMs use kata-cni's taps; DEL removes them; nothing left", { skip }, (t) =>
  twoPods(t, true),
);

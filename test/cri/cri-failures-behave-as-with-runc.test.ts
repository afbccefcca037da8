/**
 * Three failures kubelet meets, run the same way on containerd's runc handler (the baseline, in a
 * containerd with the three settings runc needs on this host) and on ours (CRI's defaults): a
 * container whose image is missing, a container that exits non-zero at once, and a pod removed
 * while its container still runs. What CRI reports (error codes, states, exit codes, reasons) must
 * be the same, and nothing of ours is left afterwards.
 */
import t from 'tap';
import { mkdirSync } from 'node:fs';
import { containerdUnavailable } from '../cni/helpers/containerd.js';
import { guestKitOrSkip } from '../helpers/runtime-core.js';
import { CriError } from './helpers/cri-client.js';
import { BUSYBOX_IMAGE, criRig, HANDLER, RUNC, type CriRig } from './helpers/cri-rig.js';
import { criResidue } from './helpers/residue.js';

const { skip: noKit } = await guestKitOrSkip();
const skip = containerdUnavailable() ?? noKit;

interface Outcome {
  missingImage: { grpcCode: number; notFound: boolean };
  exitAtOnce: { state: string; exitCode: number; reason: string };
  removedWhileRunning: { removed: boolean; pods: number; containers: number };
}

async function failures(r: CriRig, handler: string): Promise<Outcome> {
  const cfg = r.podConfig(`f-${handler}`);
  mkdirSync(cfg.log_directory!, { recursive: true });
  const pod = await r.cri.runPodSandbox(cfg, handler);

  const missing = await r.cri
    .createContainer(
      pod,
      { metadata: { name: 'm' }, image: { image: 'krt.local/missing:latest' }, command: ['true'], log_path: 'm.log' },
      cfg,
    )
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  const missingImage =
    missing instanceof CriError
      ? { grpcCode: missing.code, notFound: /not found/i.test(missing.details) }
      : { grpcCode: -1, notFound: false };

  const bad = await r.cri.createContainer(
    pod,
    { metadata: { name: 'bad' }, image: { image: BUSYBOX_IMAGE }, command: ['sh', '-c', 'exit 7'], log_path: 'bad.log' },
    cfg,
  );
  await r.cri.startContainer(bad);
  const st = await r.cri.waitContainer(bad, 'CONTAINER_EXITED');

  const long = await r.cri.createContainer(
    pod,
    { metadata: { name: 'long' }, image: { image: BUSYBOX_IMAGE }, command: ['sleep', '600'], log_path: 'long.log' },
    cfg,
  );
  await r.cri.startContainer(long);
  await r.cri.waitContainer(long, 'CONTAINER_RUNNING');
  // kubelet stops first; a runtime must cope with a remove of a running pod too (CRI: "forcibly terminated").
  const removed = await r.cri.removePodSandbox(pod).then(
    () => true,
    () => false,
  );
  return {
    missingImage,
    exitAtOnce: { state: st.state, exitCode: st.exit_code, reason: st.reason },
    removedWhileRunning: { removed, pods: (await r.cri.listPodSandbox()).length, containers: (await r.cri.listContainers()).length },
  };
}

t.test('missing image, exit at once, removal of a running pod: as with runc, and nothing left', { skip }, async (t) => {
  const baseline = await criRig(t, { kataCni: false, runcBaseline: true });
  const runc = await failures(baseline, RUNC);
  t.same(
    runc,
    {
      missingImage: { grpcCode: runc.missingImage.grpcCode, notFound: true },
      exitAtOnce: { state: 'CONTAINER_EXITED', exitCode: 7, reason: 'Error' },
      removedWhileRunning: { removed: true, pods: 0, containers: 0 },
    },
    `the runc baseline: ${JSON.stringify(runc)}`,
  );
  t.not(runc.missingImage.grpcCode, 0, 'a missing image is an error');

  const r = await criRig(t, { kataCni: false });
  const ours = await failures(r, HANDLER);
  t.same(ours, runc, `the kata-resources handler reports the same: ${JSON.stringify(ours)}`);
  t.same(await criResidue(r, { kataCni: false }), [], 'nothing of ours left');
});

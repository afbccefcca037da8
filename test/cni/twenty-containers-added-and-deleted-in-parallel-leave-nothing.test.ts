import t from 'tap';
import { tempNetns } from '../helpers/netns.js';
import {
  addList,
  delList,
  DEBIAN_CNI_DIR,
  filesUnder,
  installKataCni,
  tempDir,
  type NetworkList,
  type RuntimeOptions,
} from './helpers/cni-runtime.js';
import { namesIn, redirectState } from './helpers/inspect.js';

/**
 * 20 containers, each in its own namespace, run through [ptp, kata-cni] at the same time (one
 * host namespace, one host-local store, one kata-cni state dir), then all DELeted at the same
 * time: every call succeeds, each container gets its own tap and redirects, nothing is left.
 */
const N = 20;

t.test(`${N} parallel ADDs then ${N} parallel DELs through [ptp, kata-cni]`, async (t) => {
  const bin = await installKataCni(t);
  const host = await tempNetns(t, 'parh');
  const ctrs = await Promise.all(Array.from({ length: N }, () => tempNetns(t, 'parc')));
  const ipamDir = tempDir(t, 'paripam');
  const stateDir = tempDir(t, 'parstate');
  const list: NetworkList = {
    cniVersion: '1.0.0',
    name: 'krt-par',
    plugins: [
      { type: 'ptp', ipMasq: false, ipam: { type: 'host-local', dataDir: ipamDir, ranges: [[{ subnet: '10.97.0.0/24' }]] } },
      { type: 'kata-cni', stateDir },
    ],
  };
  const opts: RuntimeOptions = { hostNs: host, path: [DEBIAN_CNI_DIR, bin] };
  const atts = ctrs.map((c, i) => ({ containerId: `krtpar${i}`, netns: c.path, ifname: 'eth0' }));

  const adds = await Promise.allSettled(atts.map((a) => addList(list, a, opts)));
  const failed = adds.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
  t.same(failed, [], 'every ADD succeeds');
  const results = adds.map((r) => (r.status === 'fulfilled' ? r.value : undefined));
  const addrs = results.map((r) => ((r?.ips as { address: string }[] | undefined) ?? [])[0]?.address);
  t.equal(new Set(addrs).size, N, 'distinct addresses');

  const states = await Promise.all(ctrs.map((c) => redirectState(c, 'eth0', 'tap0_kata')));
  t.equal(
    states.filter((s) => s.tap?.kind === 'tun' && s.redirects.join() === 'eth0>tap0_kata,tap0_kata>eth0').length,
    N,
    'each namespace has its tap and both redirects',
  );
  t.equal(filesUnder(stateDir).length, N, 'one record per attachment');

  const dels = await Promise.allSettled(atts.map((a, i) => delList(list, a, results[i], opts)));
  t.same(
    dels.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason)),
    [],
    'every DEL succeeds',
  );
  const left = await Promise.all(ctrs.map((c) => namesIn(c)));
  t.equal(left.filter((l) => l.join() === 'lo').length, N, 'every container namespace is back to lo only');
  t.same(await namesIn(host), ['lo'], 'no host-side veth left');
  t.same(filesUnder(stateDir), [], 'no record left');
  t.same(
    filesUnder(ipamDir).filter((f) => /\d+\.\d+\.\d+\.\d+$/.test(f)),
    [],
    'every address released',
  );
});

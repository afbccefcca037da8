/**
 * Fixture (not a test): attaches a virtio-fs share for sandbox argv[3] under root argv[2] with
 * pdeathsig off, shares argv[4] read-only, prints the plugin state as one JSON line, then dies
 * with SIGKILL (a crashed runtime): the daemon, the mounts and the socket stay behind.
 */
import { silentLogger } from '../../host/log.js';
import { VirtiofsPlugin } from '../../virtiofsd-manager/plugin.js';
import { pluginCtx } from './helpers.js';

const [root, sid, volume] = process.argv.slice(2) as [string, string, string];
if (!root || !sid || !volume) {
  process.stderr.write('usage: orphan-attach ROOT SANDBOX VOLUME (a test fixture)\n');
  process.exit(0);
}
const p = new VirtiofsPlugin();
await p.attach(pluginCtx(sid, `${root}/run`, silentLogger()), { root: `${root}/kr`, pdeathsig: false, sandbox: 'chroot' });
await p.shareVolume(sid, { containerId: 'c1', source: volume, destination: '/data', readonly: true });
await p.shareRootfs(sid, 'c1', volume);
process.stdout.write(`${JSON.stringify(p.state(sid))}\n`, () => process.kill(process.pid, 'SIGKILL'));

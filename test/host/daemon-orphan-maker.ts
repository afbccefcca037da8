/**
 * Fixture (not a test): starts `sleep` as a daemon, prints its DaemonRecord as one JSON line on
 * stdout, then leaves the way argv[2] says: "exit" (normal exit, daemon orphaned) or "crash"
 * (SIGKILL to itself). argv[3] = "pdeathsig" wraps the daemon with setpriv --pdeathsig.
 */
import { startDaemon } from '../../host/daemon.js';
import { silentLogger } from '../../host/log.js';

const how = process.argv[2];
if (how !== 'exit' && how !== 'crash') {
  process.stderr.write('usage: daemon-orphan-maker exit|crash [pdeathsig] (a test fixture)\n');
  process.exit(0);
}
const pdeathsig = process.argv[3] === 'pdeathsig';
const d = await startDaemon({ name: 'orphan-sleep', file: 'sleep', args: ['1000'], log: silentLogger(), pdeathsig });
process.stdout.write(`${JSON.stringify(d.record())}\n`, () => {
  if (how === 'crash') process.kill(process.pid, 'SIGKILL');
  else process.exit(0);
});

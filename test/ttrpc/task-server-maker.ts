/**
 * A ttRPC server in its own process for the cross-process tests: the test Task service, served on
 * the listening socket inherited as fd 3 (socket activation: LISTEN_FDS=1, as containerd's runc
 * shim hands its daemon the socket) or on the path given as argv[2]. Prints "ready" on stdout once
 * it serves; on SIGTERM closes gracefully and exits 0.
 *
 *   systemd-socket-activate -l SOCK node dist/test/ttrpc/task-server-maker.js
 *   node dist/test/ttrpc/task-server-maker.js SOCK
 */
import { Task } from '../../shim/generated/containerd/runtime/v2/task/shim_pb.js';
import { TtrpcServer } from '../../ttrpc/server.js';
import { testTaskService } from './helpers/task-service.js';

const server = new TtrpcServer().register(Task, testTaskService().impl);
const path = process.argv[2];
await server.listen(process.env.LISTEN_FDS === '1' || !path ? { fd: 3 } : { path });
process.stdout.write('ready\n');
process.once('SIGTERM', () => {
  void server.close({ timeoutMs: 2000 }).then(() => process.exit(0));
});

/**
 * A throw-away unprivileged host user for the privilege-boundary tests: made with useradd
 * (no home, no login shell, a krt- name), removed with userdel when the test ends; commands run
 * as it through setpriv (its uid, gid and no supplementary groups), so nothing here needs su or PAM.
 * setpriv performs its own execve while it still holds root's capabilities (the kernel drops them
 * at that exec), so the path of the command would be looked up as root: an unprivileged shell
 * execs the command instead.
 */
import { run } from '../../host/exec.js';

interface Teardownable {
  teardown(fn: () => unknown): void;
}

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
  /** Run argv as the user; never throws for a non-zero exit. */
  run(argv: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }>;
}

export async function unprivilegedUser(t: Teardownable, tag: string): Promise<TestUser> {
  const name = `krt-${tag}-${process.pid % 100000}`.slice(0, 31);
  await run('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', '--user-group', name]);
  t.teardown(async () => {
    await run('userdel', [name], { reject: false });
  });
  const uid = Number((await run('id', ['-u', name])).stdout.trim());
  const gid = Number((await run('id', ['-g', name])).stdout.trim());
  return {
    name,
    uid,
    gid,
    run: async (argv) => {
      const r = await run(
        'setpriv',
        [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--', '/bin/sh', '-c', 'exec "$0" "$@"', ...argv],
        {
          reject: false,
          timeoutMs: 30_000,
        },
      );
      return { exitCode: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
    },
  };
}

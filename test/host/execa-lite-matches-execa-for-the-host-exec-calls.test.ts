import { execa } from 'execa';
import t from 'tap';
import { execa as lite } from '../../host/execa-lite.js';

/**
 * host/exec.ts runs commands with host/execa-lite.ts. For the call shape it uses, both
 * must give the same stdout, stderr, exitCode, timedOut and ENOENT signal.
 */
const HOST_EXEC_OPTS = { killSignal: 'SIGKILL' as const, reject: false, stripFinalNewline: false };

interface Case {
  name: string;
  file: string;
  args: string[];
  opts: Record<string, unknown>;
}

const CASES: Case[] = [
  { name: 'success with stdout and stderr', file: 'sh', args: ['-c', 'echo out; echo err >&2'], opts: { stdin: 'ignore' } },
  { name: 'non-zero exit', file: 'sh', args: ['-c', 'echo bad >&2; exit 3'], opts: { stdin: 'ignore' } },
  { name: 'input on stdin', file: 'cat', args: [], opts: { input: 'line 1\nline 2\n', stdin: 'pipe' } },
  {
    name: 'environment added to the inherited one',
    file: 'sh',
    args: ['-c', 'echo "$KRT_X:${PATH:+path}"'],
    opts: { env: { KRT_X: 'y' }, stdin: 'ignore' },
  },
  { name: 'cwd', file: 'pwd', args: [], opts: { cwd: '/tmp', stdin: 'ignore' } },
  { name: 'stdin closed for a reader without input', file: 'cat', args: [], opts: { stdin: 'ignore' } },
];

for (const c of CASES) {
  t.test(c.name, async (t) => {
    const a = (await execa(c.file, c.args, { ...HOST_EXEC_OPTS, ...c.opts } as never)) as unknown as {
      stdout: string;
      stderr: string;
      exitCode: number;
      timedOut: boolean;
    };
    const b = await lite(c.file, c.args, { ...HOST_EXEC_OPTS, ...c.opts });
    t.same(
      { stdout: b.stdout, stderr: b.stderr, exitCode: b.exitCode, timedOut: b.timedOut },
      { stdout: String(a.stdout), stderr: String(a.stderr), exitCode: a.exitCode, timedOut: a.timedOut },
    );
  });
}

t.test('timeout kills with the signal and reports timedOut', async (t) => {
  const a = await execa('sleep', ['5'], { ...HOST_EXEC_OPTS, timeout: 200, stdin: 'ignore' });
  const b = await lite('sleep', ['5'], { ...HOST_EXEC_OPTS, timeout: 200, stdin: 'ignore' });
  t.equal(b.timedOut, true);
  t.equal(b.timedOut, a.timedOut);
  t.equal(b.signal, 'SIGKILL');
});

t.test('a missing binary reports ENOENT the way host/exec.ts looks for it', async (t) => {
  const a = (await execa('/nonexistent/krt-binary', [], { ...HOST_EXEC_OPTS, stdin: 'ignore' })) as unknown as {
    code?: string;
    originalMessage?: string;
  };
  const b = await lite('/nonexistent/krt-binary', [], { ...HOST_EXEC_OPTS, stdin: 'ignore' });
  const enoent = (r: { code?: string; originalMessage?: string }): boolean =>
    r.code === 'ENOENT' || /ENOENT/.test(String(r.originalMessage ?? ''));
  t.ok(enoent(a), 'execa');
  t.ok(enoent(b), 'execa-lite');
  t.equal(b.failed, true);
});

t.test('reject (the default) throws on failure; options outside the subset are refused', async (t) => {
  const e = await lite('false', []).then(
    () => undefined,
    (err: unknown) => err as { exitCode?: number },
  );
  t.equal(e?.exitCode, 1, 'rejected with the exit code');
  t.throws(() => lite('true', [], { shell: true } as never), /option "shell" is not supported/);
});

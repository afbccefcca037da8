import t from 'tap';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { listLoops } from '../../host/loop.js';
import { cli, explain, parseJson, tempRuntime } from '../helpers/sandbox.js';

// On a kernel without device-mapper (this host's): every devmapper command says so, with the fix,
// and touches nothing. Where device-mapper exists the lab tests cover the commands instead.
const hasDm = /^\s*\d+\s+device-mapper$/m.test(readFileSync('/proc/misc', 'utf8'));

t.test(
  'pool, thin commands: E_KERNEL_FEATURE naming dm_thin_pool and the lab, no file, no loop, no state',
  { skip: hasDm ? 'not on this kernel: it has device-mapper (the kernel lab tests run the commands)' : false },
  async (t) => {
    const rt = tempRuntime(t);
    const data = join(rt.dir, 'data.img');
    const meta = join(rt.dir, 'meta.img');
    const loopsBefore = await listLoops();
    const cmds = [
      ['devmapper', 'pool', 'create', 'krt-nodm', '--data-file', data, '--metadata-file', meta, '--size', '64M'],
      ['devmapper', 'pool', 'create', 'krt-nodm', '--data', '/dev/null', '--metadata', '/dev/zero'],
      ['devmapper', 'pool', 'status', 'krt-nodm'],
      ['devmapper', 'pool', 'remove', 'krt-nodm'],
      ['devmapper', 'thin', 'create', 'krt-nodm', '1', '1G'],
      ['devmapper', 'thin', 'snapshot', 'krt-nodm', '1', '2'],
      ['devmapper', 'thin', 'activate', 'krt-nodm', '1'],
      ['devmapper', 'thin', 'deactivate', 'krt-nodm', '1'],
      ['devmapper', 'thin', 'remove', 'krt-nodm', '1'],
    ];
    for (const args of cmds) {
      const r = await cli([...args, '--config', rt.config, '--json']);
      if (r.code !== 1) t.comment(explain(r));
      t.equal(r.code, 1, `${args.slice(1, 3).join(' ')}: exit 1`);
      const j = parseJson<{ error: { code: string; message: string } }>(r);
      t.equal(j.error.code, 'E_KERNEL_FEATURE', `${args.slice(1, 3).join(' ')}: E_KERNEL_FEATURE`);
      t.match(j.error.message, /modprobe dm_thin_pool, or run it in the lab VM: scripts\/lab\.sh --modules dm_mod,dm_thin_pool/);
    }
    t.notOk(existsSync(data), 'no data file');
    t.notOk(existsSync(meta), 'no metadata file');
    t.same(existsSync(join(rt.stateDir, 'devmapper')) ? readdirSync(join(rt.stateDir, 'devmapper')) : [], [], 'no pool state');
    t.same(await listLoops(), loopsBefore, 'no loop device attached');
  },
);

t.test('usage errors come first (exit 2), on any kernel', async (t) => {
  const rt = tempRuntime(t);
  for (const args of [
    ['devmapper', 'pool', 'create', 'krt-x'],
    ['devmapper', 'pool', 'create', 'krt-x', '--data', '/dev/a', '--data-file', '/tmp/b'],
    ['devmapper', 'thin', 'create', 'krt-x', '1'],
  ]) {
    const r = await cli([...args, '--config', rt.config]);
    if (r.code !== 2) t.comment(explain(r));
    t.equal(r.code, 2, args.join(' '));
  }
  const help = await cli(['devmapper', 'pool', 'create', '--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /--block-size SIZE/);
});

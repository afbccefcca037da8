/**
 * An error the guest causes names the guest's reason: an image the kit's init cannot mount (a file
 * of zeros: no partition, so no /dev/vda1) makes the guest power off, and `sandbox up` fails
 * quoting the console's last lines (kata-init's reason), not only "agent closed". Nothing is left
 * after `down`.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cli, explain, parseJson, residue, tempRuntime } from '../../helpers/sandbox.js';

t.test('a guest that cannot mount its root: up fails quoting the console', async (t) => {
  const rt = tempRuntime(t);
  const image = join(rt.dir, 'zeros.img');
  writeFileSync(image, Buffer.alloc(8 * 1024 * 1024));
  const body = `[hypervisor.qemu]\nimage = "${image}"\ndisable_image_nvdimm = true\n\n[runtime]\nstate_dir = "${rt.stateDir}"\n`;
  writeFileSync(rt.config, body);
  const id = `krt-poweroff-${process.pid}`;
  const up = await cli(['sandbox', 'up', '--id', id, '--config', rt.config, '--json'], { timeoutMs: 300_000 });
  t.equal(up.code, 1, `up fails ${explain(up)}`);
  const err = parseJson<{ error?: { code: string; message: string } }>(up).error;
  t.equal(err?.code, 'E_AGENT', 'the agent never answered');
  t.match(
    err?.message,
    /the guest console ends with: .*kata-init: (root device \/dev\/vda1 did not appear|cannot mount \/dev\/vda)/,
    "the guest's own reason is quoted",
  );
  t.notOk(err?.message.includes(String.fromCharCode(27)), 'without terminal escapes');
  const d = await cli(['sandbox', 'down', id, '--config', rt.config, '--json'], { timeoutMs: 120_000 });
  t.equal(d.code, 0, `down exits 0 ${d.code === 0 ? '' : explain(d)}`);
  t.same(await residue(rt, { id }), [], 'nothing left');
});

import t from 'tap';
import { connectNbd } from '../../nbd/connect.js';
import { formatProbe, probeNbd } from '../../nbd/probe.js';
import { startNbdkit } from '../helpers/nbd-servers.js';
import { cli, explain } from '../helpers/sandbox.js';

// nbdkit [--filter=F...] PLUGIN [plugin and filter parameters...]
const POLICY = ['blocksize-minimum=512', 'blocksize-preferred=32768', 'blocksize-maximum=65536', 'blocksize-error-policy=error'];
const EXPORTS = [
  'exportname=alpha',
  'exportname=beta',
  'exportname-list=explicit',
  'exportname-strict=true',
  'exportdesc=fixed:scratch disk',
];

t.test('probe: size, decoded flags, advertised block sizes, name, description, structured replies, the export list', async (t) => {
  const server = await startNbdkit(t, ['--filter=exportname', '--filter=blocksize-policy', 'memory', '16M', ...EXPORTS, ...POLICY]);
  const p = await probeNbd(server.uri('beta'));
  t.match(p, {
    uri: server.uri('beta'),
    transport: 'unix',
    exportName: 'beta',
    handshake: 'fixed-newstyle',
    noZeroes: true,
    structuredReplies: true,
    size: 16 * 1024 * 1024,
    readOnly: false,
    blockSize: { minimum: 512, preferred: 32768, maximum: 65536, advertised: true },
    description: 'scratch disk',
    infoVia: 'NBD_OPT_INFO',
    exports: [
      { name: 'alpha', description: 'scratch disk' },
      { name: 'beta', description: 'scratch disk' },
    ],
  });
  t.ok(
    ['HAS_FLAGS', 'SEND_FLUSH', 'SEND_TRIM', 'SEND_WRITE_ZEROES', 'SEND_DF'].every((f) => p.flagNames.includes(f)),
    p.flagNames.join(' '),
  );
  t.equal(p.flags & 1, 1);
  t.same(JSON.parse(JSON.stringify(p)), p, 'the result is plain JSON');
  const text = formatProbe(p);
  t.equal(text[0], `export "beta" at ${server.uri('beta')}`);
  t.match(text.join('\n'), /size: 16777216 bytes \(16 MiB\)\n {2}read-only: no\n {2}transmission flags: 0x[0-9a-f]{4} HAS_FLAGS /);
  t.match(text.join('\n'), /block sizes: minimum 512, preferred 32768, maximum payload 65536\n/);
  t.match(text.join('\n'), /exports \(2\):\n {4}"alpha" - scratch disk\n {4}"beta" - scratch disk/);
  await t.rejects(
    probeNbd(server.uri('gamma')),
    { code: 'E_NBD', details: { reply: 'NBD_REP_ERR_UNKNOWN' } },
    'a name the server does not have',
  );
});

t.test('the client honours the block sizes: unaligned requests refused locally, large ones split to the maximum', async (t) => {
  const server = await startNbdkit(t, ['--filter=blocksize-policy', 'memory', '16M', ...POLICY]);
  const c = await connectNbd(server.uri());
  t.teardown(() => c.close());
  t.same(c.info.blockSize, { minimum: 512, preferred: 32768, maximum: 65536, advertised: true });
  await t.rejects(c.read(100, Buffer.alloc(512)), { code: 'E_INVALID_ARGUMENT', message: /not aligned to the minimum block size 512/ });
  await t.rejects(c.write(0, Buffer.alloc(700)), { code: 'E_INVALID_ARGUMENT' });
  // The server answers EINVAL to anything over 64 KiB; a 1 MiB write and read succeed in pieces.
  const data = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < data.length; i += 4) data.writeUInt32BE(i, i);
  await c.write(512, data);
  const back = Buffer.alloc(data.length);
  await c.read(512, back);
  t.ok(back.equals(data), '1 MiB through a 64 KiB maximum payload');
});

t.test('a server without a block size limit (2^32-1) is capped at 32 MiB per request', async (t) => {
  const server = await startNbdkit(t, ['--filter=blocksize-policy', 'memory', '1M', 'blocksize-minimum=1']);
  const c = await connectNbd(server.uri());
  t.teardown(() => c.close());
  t.equal(c.info.blockSize.maximum, 32 * 1024 * 1024);
});

t.test('real server errors: nbdkit error filter answers EIO, the client reports E_NBD with the error value', async (t) => {
  const server = await startNbdkit(t, ['--filter=error', 'memory', '1M', 'error=EIO', 'error-pread-rate=100%']);
  const c = await connectNbd(server.uri());
  t.teardown(() => c.close());
  await t.rejects(c.read(0, Buffer.alloc(4096)), { code: 'E_NBD', details: { errno: 5, errnoName: 'EIO', command: 'NBD_CMD_READ' } });
  await c.write(0, Buffer.alloc(4096, 1));
  t.pass('writes still succeed on the same connection');
});

t.test('kata-resources nbd probe URI [--json]', async (t) => {
  const server = await startNbdkit(t, ['--filter=exportname', 'memory', '2M', ...EXPORTS]);
  const json = await cli(['nbd', 'probe', server.uri('alpha'), '--json']);
  t.equal(json.code, 0, explain(json));
  t.same(JSON.parse(json.stdout), await probeNbd(server.uri('alpha')), '--json prints the probe object');
  const text = await cli(['nbd', 'probe', server.uri('alpha')]);
  t.equal(text.code, 0, explain(text));
  t.equal(text.stdout, `${formatProbe(await probeNbd(server.uri('alpha'))).join('\n')}\n`, 'text form');
  const help = await cli(['nbd', 'probe', '--help']);
  t.match(help.stdout, /kata-resources nbd probe URI \[--timeout MS\] \[--json\]/);
  const tls = await cli(['nbd', 'probe', 'nbds://example.com/x']);
  t.equal(tls.code, 1);
  t.match(tls.stderr, /E_UNSUPPORTED: .*TLS is not supported/);
  const bad = await cli(['nbd', 'probe', 'nbd+unix:///x', '--json']);
  t.equal(bad.code, 1);
  t.match(JSON.parse(bad.stdout), { error: { code: 'E_INVALID_ARGUMENT' } });
  const missing = await cli(['nbd', 'probe', server.uri('nope')]);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /E_NBD: .*export "nope" does not exist/);
  const usage = await cli(['nbd', 'probe']);
  t.equal(usage.code, 2, 'a missing URI is a usage error');
});

import t from 'tap';
import { formatNbdUri, parseNbdUri } from '../../nbd/uri.js';

// The export-name table of NetworkBlockDevice/nbd doc/uri.md ("NBD URI export name").
const SPEC_EXAMPLES: [string, string][] = [
  ['nbd://example.com/disk', 'disk'],
  ['nbd+unix:///disk?socket=sock', 'disk'],
  ['nbd://example.com/', ''],
  ['nbd://example.com', ''],
  ['nbd://example.com//disk', '/disk'],
  ['nbd://example.com/hello%20world', 'hello world'],
];

t.test('the export names of the spec examples', async (t) => {
  for (const [uri, name] of SPEC_EXAMPLES) t.equal(parseNbdUri(uri).exportName, name, uri);
});

t.test('tcp: host, default port 10809, explicit port, IPv6 literal', async (t) => {
  t.same(parseNbdUri('nbd://example.com:10809/export'), { transport: 'tcp', host: 'example.com', port: 10809, exportName: 'export' });
  t.same(parseNbdUri('nbd://example.com/disk'), { transport: 'tcp', host: 'example.com', port: 10809, exportName: 'disk' });
  t.same(parseNbdUri('nbd://10.0.0.1:1234/'), { transport: 'tcp', host: '10.0.0.1', port: 1234, exportName: '' });
  t.same(parseNbdUri('nbd://[::1]:10810/x'), { transport: 'tcp', host: '::1', port: 10810, exportName: 'x' });
  t.same(parseNbdUri('NBD://Example.com/x').transport, 'tcp', 'the scheme is case-insensitive');
});

t.test('unix: the socket parameter, percent-decoded, "+" kept, abstract sockets', async (t) => {
  t.same(parseNbdUri('nbd+unix:///export?socket=/run/nbd.sock'), { transport: 'unix', socket: '/run/nbd.sock', exportName: 'export' });
  t.same(parseNbdUri('nbd+unix:///?socket=nbd.sock'), { transport: 'unix', socket: 'nbd.sock', exportName: '' });
  t.equal((parseNbdUri('nbd+unix:///?socket=/tmp/a+b%20c.sock') as { socket: string }).socket, '/tmp/a+b c.sock');
  t.equal(
    (parseNbdUri('nbd+unix:///?socket=%00/abstract') as { socket: string }).socket,
    '\0/abstract',
    'the spec example of an abstract socket',
  );
});

t.test('TLS schemes and TLS parameters are refused with a typed "TLS not supported" error', async (t) => {
  for (const uri of [
    'nbds://example.com/disk',
    'nbds+unix:///disk?socket=s',
    'nbd://example.com/disk?tls-type=x509',
    'nbd://user@example.com/disk',
  ]) {
    t.throws(() => parseNbdUri(uri), { code: 'E_UNSUPPORTED', message: /TLS is not supported/, details: { tls: true } }, uri);
  }
});

t.test('malformed URIs are E_INVALID_ARGUMENT naming the URI and the reason', async (t) => {
  const cases: [string, RegExp][] = [
    ['nbd+unix:///disk', /needs a socket=PATH/],
    ['nbd+unix://host/disk?socket=s', /takes no host/],
    ['nbd://example.com/disk?socket=s', /unknown query parameter "socket"/],
    ['nbd://example.com/disk?x-foo=1', /unknown query parameter "x-foo"/],
    ['nbd:///disk', /needs a host/],
    ['nbd://h:0/x', /port "0"/],
    ['nbd://h:65536/x', /port "65536"/],
    ['nbd://h/x#frag', /fragment/],
    ['nbd://h/bad%zz', /percent-encoding/],
    ['nbd://h/a%00b', /NUL/],
    ['http://h/x', /unknown scheme "http"/],
    ['/dev/nbd0', /not a URI/],
    ['nbd+unix:///?socket=a&socket=b', /more than one socket/],
  ];
  for (const [uri, re] of cases) {
    t.throws(() => parseNbdUri(uri), { code: 'E_INVALID_ARGUMENT', message: re, details: { uri } }, uri);
  }
});

t.test('formatNbdUri gives a URI that parses back to the same address', async (t) => {
  const addrs = [
    { transport: 'unix', socket: '/tmp/dir with space/s.sock', exportName: 'a/b c' },
    { transport: 'tcp', host: 'example.com', port: 10809, exportName: '' },
    { transport: 'tcp', host: '::1', port: 99, exportName: '/lead' },
  ] as const;
  for (const a of addrs) t.same(parseNbdUri(formatNbdUri(a)), a, formatNbdUri(a));
  t.equal(formatNbdUri({ transport: 'tcp', host: 'example.com', port: 10809, exportName: 'disk' }), 'nbd://example.com/disk');
});

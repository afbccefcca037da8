import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import { chmod, unlink } from 'node:fs/promises';
import { KataError, isKataError } from '../../host/errors.js';
import type { Logger } from '../../host/log.js';
import type { NetworkOptions, Sandbox } from '../sandbox/sandbox.js';
import type { ExecRequest } from './mgmt-protocol.js';

async function body(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > 1 << 20) throw new KataError('E_INVALID_ARGUMENT', 'request body over 1 MiB');
    chunks.push(c as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text === '') return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new KataError('E_INVALID_ARGUMENT', 'request body is not JSON');
  }
}

function send(res: ServerResponse, status: number, value: unknown): void {
  const data = Buffer.from(JSON.stringify(value));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': data.length });
  res.end(data);
}

/**
 * Serve the sandbox's management API on a unix socket (mode 0600). `onShutdown` runs after the
 * answer to POST /shutdown has been sent.
 */
export async function serveManagement(
  socketPath: string,
  sandbox: Sandbox,
  log: Logger,
  onShutdown: () => void,
  netOpts: () => NetworkOptions,
): Promise<Server> {
  await unlink(socketPath).catch(() => {});
  let shuttingDown: Promise<void> | undefined;
  const server = createServer((req, res) => {
    void (async () => {
      try {
        const route = `${req.method} ${req.url}`;
        if (route === 'GET /sandbox') return send(res, 200, sandbox.view());
        if (route === 'GET /sandbox/guest') {
          const [ifs, routes, mounts] = await Promise.all([
            sandbox.agent.listInterfaces(),
            sandbox.agent.listRoutes(),
            sandbox.agent.listMounts(),
          ]);
          return send(res, 200, { interfaces: ifs.Interfaces, routes: routes.Routes, mounts: mounts.mounts });
        }
        if (route === 'POST /exec') {
          const r = (await body(req)) as ExecRequest;
          if (!Array.isArray(r.argv) || r.argv.length === 0 || !r.argv.every((a) => typeof a === 'string')) {
            throw new KataError('E_INVALID_ARGUMENT', 'exec needs argv: a non-empty array of strings');
          }
          return send(res, 200, await sandbox.agent.exec(r.argv, r.timeoutMs !== undefined ? { timeoutMs: r.timeoutMs } : {}));
        }
        if (route === 'POST /shares') {
          const r = (await body(req)) as { source?: unknown; name?: unknown; readonly?: unknown };
          if (typeof r.source !== 'string' || (r.name !== undefined && typeof r.name !== 'string')) {
            throw new KataError('E_INVALID_ARGUMENT', 'share needs {source: string, name?: string, readonly?: boolean}');
          }
          return send(
            res,
            200,
            await sandbox.shareVolume({
              source: r.source,
              readonly: r.readonly === true,
              ...(typeof r.name === 'string' ? { name: r.name } : {}),
            }),
          );
        }
        if (route === 'POST /unshare') {
          const r = (await body(req)) as { name?: unknown };
          if (typeof r.name !== 'string') throw new KataError('E_INVALID_ARGUMENT', 'unshare needs {name: string}');
          await sandbox.unshareVolume(r.name);
          return send(res, 200, { name: r.name, state: 'unshared' });
        }
        if (route === 'GET /interfaces') return send(res, 200, await sandbox.agent.listInterfaces());
        if (route === 'GET /routes') return send(res, 200, await sandbox.agent.listRoutes());
        if (route === 'POST /routes') {
          const r = (await body(req)) as { Routes?: unknown };
          if (!Array.isArray(r.Routes))
            throw new KataError('E_INVALID_ARGUMENT', 'route update needs {Routes: [Route...]} (Kata agent shape)');
          return send(res, 200, await sandbox.agent.updateRoutes(r.Routes as never));
        }
        if (route === 'POST /interfaces') {
          const r = (await body(req)) as { link?: unknown; interface?: unknown };
          const cfg = netOpts();
          if (typeof r.link === 'string') return send(res, 200, await sandbox.addInterface({ link: r.link }, cfg));
          const i = r.interface as { name?: unknown } | undefined;
          if (!i || typeof i !== 'object' || typeof i.name !== 'string') {
            throw new KataError(
              'E_INVALID_ARGUMENT',
              'interface add needs {link: NAME} or {interface: {name, hwAddr?, mtu?, IPAddresses?}} (Kata agent Interface shape)',
            );
          }
          return send(res, 200, await sandbox.addInterface({ interface: i as never }, cfg));
        }
        if (route === 'POST /interfaces/remove') {
          const r = (await body(req)) as { name?: unknown };
          if (typeof r.name !== 'string') throw new KataError('E_INVALID_ARGUMENT', 'interface remove needs {name: NAME or MAC}');
          await sandbox.removeInterface(r.name);
          return send(res, 200, { name: r.name, state: 'removed' });
        }
        if (route === 'POST /shutdown') {
          shuttingDown ??= sandbox.down();
          await shuttingDown;
          send(res, 200, { id: sandbox.id, state: 'removed', timings: sandbox.timings });
          setImmediate(onShutdown);
          return;
        }
        send(res, 404, { error: { code: 'E_INVALID_ARGUMENT', message: `no route ${route}` } });
      } catch (e) {
        const err = isKataError(e) ? e : new KataError('E_INTERNAL', (e as Error).message);
        log.warn({ code: err.code, err: err.message, url: req.url }, 'management request failed');
        send(
          res,
          err.code === 'E_INVALID_ARGUMENT' ||
            err.code === 'E_PATH_UNSAFE' ||
            err.code === 'E_LINK_NOT_FOUND' ||
            err.code === 'E_INVALID_NAME'
            ? 400
            : 500,
          { error: { code: err.code, message: err.message } },
        );
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  await chmod(socketPath, 0o600);
  return server;
}

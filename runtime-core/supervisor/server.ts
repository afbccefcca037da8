import { chmod, unlink } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { KataError, isKataError, statusOf } from '../../host/errors.js';
import type { Logger } from '../../host/log.js';
import type { SandboxService } from '../sandbox/service.js';
import type { MgmtMethod } from './mgmt-protocol.js';
import { EXEC_UPGRADE } from '../exec/frames.js';
import { serveExecStream } from './exec-stream.js';
import type { AgentClient } from '../agent/client.js';

/**
 * The management API over HTTP/1.1 on a unix socket: `POST /<Method>` with JSON params (see
 * mgmt-protocol.ts), and `GET /Exec` with `Upgrade: kata-exec/1`, which turns the connection into an
 * exec stream (exec-stream.ts).
 */

const MAX_BODY = 1 << 20;

async function body(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY) throw new KataError('E_INVALID_ARGUMENT', `request body over ${MAX_BODY} bytes`);
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

/** Serve the service on a unix socket (mode 0600). */
export async function serveManagement(
  socketPath: string,
  service: SandboxService,
  log: Logger,
  agent?: () => AgentClient,
): Promise<Server> {
  await unlink(socketPath).catch(() => {});
  const methods = new Set(Object.keys(service));
  const server = createServer((req, res) => {
    void (async () => {
      const method = (req.url ?? '').slice(1);
      try {
        if (req.method !== 'POST' || !methods.has(method)) {
          throw new KataError(
            'E_INVALID_ARGUMENT',
            `no management method ${req.method} ${req.url} (methods: POST /${[...methods].join(', /')})`,
          );
        }
        send(res, 200, await service[method as MgmtMethod](await body(req)));
      } catch (e) {
        const err = isKataError(e) ? e : new KataError('E_INTERNAL', (e as Error).message);
        log.warn({ code: err.code, err: err.message, method }, 'management request failed');
        send(res, statusOf(err.code), { error: { code: err.code, message: err.message, ...err.details } });
      }
    })();
  });
  server.on('upgrade', (req: IncomingMessage, sock: Socket, head: Buffer) => {
    if (req.url !== '/Exec' || req.headers.upgrade !== EXEC_UPGRADE || !agent) {
      sock.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      return;
    }
    serveExecStream(sock, head, agent, log);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  await chmod(socketPath, 0o600);
  return server;
}

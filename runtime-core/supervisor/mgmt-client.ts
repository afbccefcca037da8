import { request } from 'node:http';
import { KataError, isErrorCode } from '../../host/errors.js';
import type { MgmtMethod, MgmtParams, MgmtResult } from './mgmt-protocol.js';

/** Call a method of the supervisor's management API; its error comes back as the KataError it was. */
export function mgmtCall<M extends MgmtMethod>(
  socketPath: string,
  method: M,
  params: MgmtParams<M>,
  timeoutMs = 60_000,
): Promise<MgmtResult<M>> {
  return new Promise((resolve, reject) => {
    const data = Buffer.from(JSON.stringify(params));
    const req = request(
      {
        socketPath,
        method: 'POST',
        path: `/${method}`,
        headers: { 'content-type': 'application/json', 'content-length': data.length },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let parsed: unknown;
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null');
          } catch {
            reject(new KataError('E_INTERNAL', `supervisor answered ${method} with non-JSON`));
            return;
          }
          if ((res.statusCode ?? 500) >= 400) {
            const e = (parsed as { error?: { code?: unknown; message?: string } } | null)?.error;
            const { code: _c, message: _m, ...details } = e ?? {};
            reject(
              new KataError(isErrorCode(e?.code) ? e.code : 'E_INTERNAL', e?.message ?? `supervisor answered ${res.statusCode}`, details),
            );
          } else {
            resolve(parsed as MgmtResult<M>);
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new KataError('E_TIMEOUT', `supervisor did not answer ${method} within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.write(data);
    req.end();
  });
}

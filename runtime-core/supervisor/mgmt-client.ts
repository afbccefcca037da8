import { request } from 'node:http';
import { KataError, type ErrorCode, ERROR_CODES } from '../../host/errors.js';

/** Call the supervisor's management socket; a connection failure is E_SANDBOX_NOT_FOUND-ish (caller decides). */
export function mgmtCall<T>(socketPath: string, method: 'GET' | 'POST', path: string, body?: unknown, timeoutMs = 60_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = request(
      {
        socketPath,
        method,
        path,
        headers: { 'content-type': 'application/json', ...(data ? { 'content-length': data.length } : {}) },
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
            reject(new KataError('E_INTERNAL', `supervisor answered ${path} with non-JSON`));
            return;
          }
          if ((res.statusCode ?? 500) >= 400) {
            const e = (parsed as { error?: { code?: string; message?: string } })?.error;
            const code = (e?.code && e.code in ERROR_CODES ? e.code : 'E_INTERNAL') as ErrorCode;
            reject(new KataError(code, e?.message ?? `supervisor answered ${res.statusCode}`));
          } else {
            resolve(parsed as T);
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new KataError('E_TIMEOUT', `supervisor did not answer ${method} ${path} within ${timeoutMs} ms`)));
    req.on('error', reject);
    if (data) req.write(data);
    req.end();
  });
}

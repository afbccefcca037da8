export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Retry fn while shouldRetry(error) holds, up to `attempts` tries, waiting backoffMs * i before try i+1
 * (Kata's qdisc EBUSY policy is 5 attempts, 10 ms * i).
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, shouldRetry: (e: unknown) => boolean, attempts = 5, backoffMs = 10): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn(i);
    } catch (e) {
      if (i >= attempts || !shouldRetry(e)) throw e;
      await sleep(backoffMs * i);
    }
  }
}

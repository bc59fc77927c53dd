/**
 * CLOCK_MONOTONIC in milliseconds. Every process on one machine reads the
 * same clock, so a send time taken in the load generator and an arrival time
 * taken in the sink can be subtracted; wall-clock steps do not move it.
 */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Resolves after `delayMs`; never keeps a process alive on its own. */
export function delay(delayMs: number): Promise<void> {
  return new Promise((resolve) => {
    setTimeout(resolve, Math.max(0, delayMs)).unref();
  });
}

/** Resolves once the monotonic clock reaches `targetMs`. */
export async function delayUntil(targetMs: number): Promise<void> {
  await delay(targetMs - monotonicMs());
}

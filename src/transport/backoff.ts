/**
 * Exponential backoff with full jitter: a uniform random delay between 0 and
 * min(maxDelayMs, initialDelayMs * 2^failures). Full jitter spreads the
 * reconnects of many agents after a shared outage, instead of letting them
 * return in waves (see "Exponential Backoff And Jitter", AWS Architecture Blog, 2015).
 */
export function fullJitterDelayMs(
  failures: number,
  initialDelayMs: number,
  maxDelayMs: number,
  random: () => number = Math.random,
): number {
  const exponent = Math.min(Math.max(failures, 0), 30);
  const ceilingMs = Math.min(maxDelayMs, initialDelayMs * 2 ** exponent);
  return Math.round(random() * ceilingMs);
}

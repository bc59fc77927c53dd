/**
 * Serial-number arithmetic (RFC 1982) on RTP's 16-bit sequence numbers and
 * 32-bit timestamps: the signed distance from one value to the next,
 * correct across wrap-around as long as the true distance is under half the
 * number space.
 */

/** Signed distance from sequence number `from` to `to`, in [-32768, 32767]. */
export function sequenceDelta(to: number, from: number): number {
  return (((to - from) & 0xffff) << 16) >> 16;
}

/** Signed distance from timestamp `from` to `to`, in [-2^31, 2^31 - 1] ticks. */
export function timestampDelta(to: number, from: number): number {
  return (to - from) | 0;
}

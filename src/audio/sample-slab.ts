/** Samples of one slab: 32 KiB, room for 51 G.711 packets of 20 ms. */
const SLAB_SAMPLES = 8192;
/** Requests above this get an array of their own, so one large block does not waste most of a slab. */
const MAX_SHARED_SAMPLES = SLAB_SAMPLES / 4;

let slab = new Float32Array(SLAB_SAMPLES);
let used = 0;

/**
 * Returns a Float32Array of `sampleCount` samples cut from a shared slab,
 * as Node's Buffer pool cuts small Buffers. A typed array of its own costs
 * an allocation of native memory and its release after garbage collection,
 * which per RTP packet showed up in profiles next to the decoding itself.
 * A view keeps its whole slab alive, so keep views only while a block is
 * in flight.
 */
export function takeSamples(sampleCount: number): Float32Array {
  if (sampleCount > MAX_SHARED_SAMPLES) {
    return new Float32Array(sampleCount);
  }
  if (used + sampleCount > SLAB_SAMPLES) {
    slab = new Float32Array(SLAB_SAMPLES);
    used = 0;
  }
  const view = slab.subarray(used, used + sampleCount);
  used += sampleCount;
  return view;
}

/**
 * G.711 mu-law and A-law companding between 8-bit codes and 16-bit linear
 * PCM, after ITU-T Recommendation G.711 (11/1988), Tables 1 and 2.
 *
 * Decoding maps each code to the decoder output value of its quantization
 * interval, scaled from G.711's 13-bit (A-law) or 14-bit (mu-law) range to
 * 16 bits. Encoding truncates a 16-bit sample to that range and finds the
 * interval between G.711's decision values, as the ITU-T G.191 reference
 * software does. Like that software, it encodes a negative sample from its
 * ones' complement (-x - 1), so `encode(-x - 1)` is `encode(x)` with the
 * sign bit cleared.
 *
 * NOTE: ffmpeg's pcm_mulaw and pcm_alaw encoders (checked with 5.1) differ:
 * they floor the sample to 14 bits and pick between output values by their
 * midpoints. So they give the neighbouring code within a quarter step above
 * a segment boundary, and for negative samples within one 14-bit unit of a
 * decision value. That is 964 of the 65536 16-bit values per law, and 7 to
 * 9 % of the samples of an 8 kHz speech recording. Decoding is identical.
 */

/** Sign bit of a G.711 code: set for positive values in both laws. */
const SIGN_BIT = 0x80;
/** A-law codes are sent with every even bit inverted. */
const ALAW_EVEN_BITS = 0x55;
/** Mu-law codes are sent with the 7 magnitude bits inverted. */
const MULAW_MAGNITUDE_BITS = 0x7f;
/** Added to a 14-bit mu-law magnitude so every segment starts at a power of two. */
const MULAW_BIAS = 33;
/** Largest biased 14-bit mu-law magnitude; anything louder is encoded as the top code. */
const MULAW_MAX_BIASED = 0x1fff;

/** Decodes one mu-law code to a 16-bit linear sample in [-32124, 32124]. */
export function mulawToLinear(code: number): number {
  const inverted = ~code & 0xff;
  const segment = (inverted >> 4) & 0x07;
  const quantization = inverted & 0x0f;
  // Output value in 14-bit units is (2q + 33) * 2^segment - 33; times 4 for 16 bits.
  const magnitude = (((quantization << 1) + MULAW_BIAS) << segment) - MULAW_BIAS;
  return (code & SIGN_BIT) !== 0 ? magnitude << 2 : -(magnitude << 2);
}

/** Decodes one A-law code to a 16-bit linear sample in [-32256, 32256]. */
export function alawToLinear(code: number): number {
  const plain = (code ^ ALAW_EVEN_BITS) & 0xff;
  const segment = (plain >> 4) & 0x07;
  const quantization = plain & 0x0f;
  // Output value in 13-bit units: 2q + 1 in segment 0, (2q + 33) * 2^(segment - 1) above; times 8 for 16 bits.
  const magnitude = segment === 0 ? (quantization << 1) + 1 : ((quantization << 1) + 33) << (segment - 1);
  return (plain & SIGN_BIT) !== 0 ? magnitude << 3 : -(magnitude << 3);
}

/** Encodes one 16-bit linear sample (clamped to [-32768, 32767]) to a mu-law code. */
export function linearToMulaw(sample: number): number {
  const value = clampInt16(sample);
  const negative = value < 0;
  let biased = ((negative ? ~value : value) >> 2) + MULAW_BIAS;
  if (biased > MULAW_MAX_BIASED) {
    biased = MULAW_MAX_BIASED;
  }
  // A biased magnitude in [32 << s, 64 << s) lies in segment s, whose step is 2^(s + 1).
  const segment = 31 - Math.clz32(biased) - 5;
  const quantization = (biased >> (segment + 1)) & 0x0f;
  const magnitudeBits = ((segment << 4) | quantization) ^ MULAW_MAGNITUDE_BITS;
  return negative ? magnitudeBits : magnitudeBits | SIGN_BIT;
}

/** Encodes one 16-bit linear sample (clamped to [-32768, 32767]) to an A-law code. */
export function linearToAlaw(sample: number): number {
  const value = clampInt16(sample);
  const negative = value < 0;
  // 12-bit magnitude of G.711's 13-bit sign-magnitude range.
  const magnitude = (negative ? ~value : value) >> 3;
  let magnitudeBits: number;
  if (magnitude < 32) {
    // Segments 0 and 1 share the step of 2, so the 5 top bits are segment and quantization at once.
    magnitudeBits = magnitude >> 1;
  } else {
    // A magnitude in [16 << s, 32 << s) lies in segment s, whose step is 2^s.
    const segment = 31 - Math.clz32(magnitude) - 4;
    magnitudeBits = (segment << 4) | ((magnitude >> segment) & 0x0f);
  }
  return (negative ? magnitudeBits : magnitudeBits | SIGN_BIT) ^ ALAW_EVEN_BITS;
}

function clampInt16(sample: number): number {
  if (sample > 32767) {
    return 32767;
  }
  if (sample < -32768) {
    return -32768;
  }
  return sample | 0;
}

function buildDecodeTable(decode: (code: number) => number): Int16Array {
  const table = new Int16Array(256);
  for (let code = 0; code < 256; code++) {
    table[code] = decode(code);
  }
  return table;
}

/** Encoder tables indexed by the 16-bit sample + 32768: 64 KiB each, built once at load. */
function buildEncodeTable(encode: (sample: number) => number): Uint8Array {
  const table = new Uint8Array(65536);
  for (let index = 0; index < 65536; index++) {
    table[index] = encode(index - 32768);
  }
  return table;
}

/** 16-bit linear value of each mu-law code. */
export const MULAW_DECODE_TABLE: Int16Array = buildDecodeTable(mulawToLinear);
/** 16-bit linear value of each A-law code. */
export const ALAW_DECODE_TABLE: Int16Array = buildDecodeTable(alawToLinear);
/** Mu-law code of each 16-bit sample, indexed by sample + 32768. */
export const MULAW_ENCODE_TABLE: Uint8Array = buildEncodeTable(linearToMulaw);
/** A-law code of each 16-bit sample, indexed by sample + 32768. */
export const ALAW_ENCODE_TABLE: Uint8Array = buildEncodeTable(linearToAlaw);

function checkLengths(sourceLength: number, destinationLength: number): void {
  if (destinationLength < sourceLength) {
    throw new RangeError(
      `G.711 destination is too short: ${destinationLength} samples for ${sourceLength} source samples; pass a destination at least as long as the source`,
    );
  }
}

function decodeWith(table: Int16Array, source: Uint8Array, destination: Int16Array): void {
  checkLengths(source.length, destination.length);
  for (let index = 0; index < source.length; index++) {
    destination[index] = table[source[index]!]!;
  }
}

function encodeWith(table: Uint8Array, source: Int16Array, destination: Uint8Array): void {
  checkLengths(source.length, destination.length);
  for (let index = 0; index < source.length; index++) {
    destination[index] = table[source[index]! + 32768]!;
  }
}

/** Decodes every mu-law code of `source` into the start of `destination`. A Buffer is a Uint8Array. */
export function decodeMulaw(source: Uint8Array, destination: Int16Array): void {
  decodeWith(MULAW_DECODE_TABLE, source, destination);
}

/** Decodes every A-law code of `source` into the start of `destination`. */
export function decodeAlaw(source: Uint8Array, destination: Int16Array): void {
  decodeWith(ALAW_DECODE_TABLE, source, destination);
}

/** Encodes every sample of `source` into mu-law codes at the start of `destination`. */
export function encodeMulaw(source: Int16Array, destination: Uint8Array): void {
  encodeWith(MULAW_ENCODE_TABLE, source, destination);
}

/** Encodes every sample of `source` into A-law codes at the start of `destination`. */
export function encodeAlaw(source: Int16Array, destination: Uint8Array): void {
  encodeWith(ALAW_ENCODE_TABLE, source, destination);
}

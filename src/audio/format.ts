/**
 * Audio vocabulary shared by sources, converters and streams: a format
 * (encoding, rate, channels), blocks of float PCM from sources, and encoded
 * frames sent on a stream.
 */

/** Encodings the agent sends; the stream query uses the same names. */
export type PcmEncoding = 's16le' | 'mulaw' | 'alaw';

export interface AudioFormat {
  encoding: PcmEncoding;
  sampleRateHz: number;
  channels: number;
}

/**
 * Interleaved float PCM produced by a source, each sample in [-1, 1).
 * `timestampMs` is the position of the first sample on the source's own
 * clock (device callbacks, RTP timestamps, file offset), counted from the
 * source's start.
 */
export interface PcmBlock {
  samples: Float32Array;
  sampleRateHz: number;
  channels: number;
  timestampMs: number;
  /**
   * The G.711 bytes the samples were decoded from, when a source has them.
   * An output in the same encoding, rate and channels sends these bytes
   * as they came, instead of encoding the samples again.
   */
  encoded?: { encoding: 'mulaw' | 'alaw'; data: Buffer };
}

/** Encoded audio for one WebSocket binary frame. Its duration follows from its byte length and format. */
export interface AudioFrame {
  data: Buffer;
  /** Position of the first sample, in milliseconds of stream time. */
  timestampMs: number;
  durationMs: number;
}

export function bytesPerSample(encoding: PcmEncoding): number {
  switch (encoding) {
    case 's16le':
      return 2;
    case 'mulaw':
    case 'alaw':
      return 1;
  }
}

/** Bytes of one sample for every channel. */
export function bytesPerSampleFrame(format: AudioFormat): number {
  return bytesPerSample(format.encoding) * format.channels;
}

/** Byte length of `durationMs` of audio, rounded down to whole sample frames. */
export function bytesForDuration(format: AudioFormat, durationMs: number): number {
  const sampleFrames = Math.floor((format.sampleRateHz * durationMs) / 1000);
  return sampleFrames * bytesPerSampleFrame(format);
}

/** Duration of `byteLength` bytes of audio, in milliseconds. */
export function durationMsOf(format: AudioFormat, byteLength: number): number {
  return (byteLength / bytesPerSampleFrame(format) / format.sampleRateHz) * 1000;
}

/**
 * Converts a float sample to 16 bits: `round(x * 32768)` clamped to
 * [-32768, 32767], exact for values of the form k / 32768. NaN from a broken
 * source becomes silence instead of poisoning encoder tables or filter state.
 */
export function floatToInt16(sample: number): number {
  const scaled = Math.round(sample * 32768);
  if (scaled > 32767) {
    return 32767;
  }
  if (scaled < -32768) {
    return -32768;
  }
  return scaled === scaled ? scaled : 0;
}

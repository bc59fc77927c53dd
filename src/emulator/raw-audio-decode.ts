import { RAW_AUDIO_FORMATS, type RawAudioFormat } from '../jobs/protocol.ts';
import { ALAW_DECODE_TABLE, MULAW_DECODE_TABLE } from '../audio/g711.ts';

/** Full scale of 16-bit PCM: samples are divided by this to land in [-1, 1). */
const INT16_FULL_SCALE = 32768;

/**
 * Decodes raw stream audio into interleaved float samples in [-1, 1).
 * `data` must hold whole samples; callers check the length first.
 */
export function decodeRawAudio(format: RawAudioFormat, data: Buffer): Float32Array {
  const sampleCount = Math.floor(data.length / RAW_AUDIO_FORMATS[format]);
  const samples = new Float32Array(sampleCount);
  switch (format) {
    case 's16le':
      for (let i = 0; i < sampleCount; i += 1) {
        samples[i] = data.readInt16LE(i * 2) / INT16_FULL_SCALE;
      }
      return samples;
    case 's16be':
      for (let i = 0; i < sampleCount; i += 1) {
        samples[i] = data.readInt16BE(i * 2) / INT16_FULL_SCALE;
      }
      return samples;
    case 'f32le':
      for (let i = 0; i < sampleCount; i += 1) {
        samples[i] = data.readFloatLE(i * 4);
      }
      return samples;
    case 'mulaw':
      for (let i = 0; i < sampleCount; i += 1) {
        samples[i] = (MULAW_DECODE_TABLE[data[i] ?? 0xff] ?? 0) / INT16_FULL_SCALE;
      }
      return samples;
    case 'alaw':
      for (let i = 0; i < sampleCount; i += 1) {
        samples[i] = (ALAW_DECODE_TABLE[data[i] ?? 0xd5] ?? 0) / INT16_FULL_SCALE;
      }
      return samples;
  }
}

/** Index of the first sample that is NaN or infinite, or -1 when every sample is finite. */
export function findNonFiniteSample(samples: Float32Array): number {
  for (let i = 0; i < samples.length; i += 1) {
    if (!Number.isFinite(samples[i])) {
      return i;
    }
  }
  return -1;
}

/**
 * Level measurements of uploaded media files. WAV files are parsed with the
 * `wavefile` package and their samples decoded here in blocks, so a long file
 * never needs a second, float copy in memory. Other formats are only counted.
 */
import wavefile from 'wavefile';
import { ALAW_DECODE_TABLE, MULAW_DECODE_TABLE } from '../audio/g711.ts';
import { LevelMeter, type LevelMeasurement } from './level-meter.ts';

export interface WavMeasurement {
  sampleRateHz: number;
  channels: number;
  durationMs: number;
  measurements: LevelMeasurement[];
}

/** WAVE format tags from the RIFF specification (mmreg.h). */
const WAVE_FORMAT_PCM = 1;
const WAVE_FORMAT_IEEE_FLOAT = 3;
const WAVE_FORMAT_ALAW = 6;
const WAVE_FORMAT_MULAW = 7;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;

/** Sample frames decoded per block: about one second at common rates. */
const BLOCK_FRAMES = 48_000;

interface WavFmt {
  audioFormat: number;
  numChannels: number;
  sampleRate: number;
  bitsPerSample: number;
  subformat: number[];
}

/** True when `data` starts with a RIFF, RIFX or RF64 header of type WAVE. */
export function looksLikeWav(data: Buffer): boolean {
  if (data.length < 12) {
    return false;
  }
  const container = data.toString('latin1', 0, 4);
  return (container === 'RIFF' || container === 'RIFX' || container === 'RF64') && data.toString('latin1', 8, 12) === 'WAVE';
}

type SampleReader = (bytes: Buffer, offset: number) => number;

/** Returns a reader of one sample normalised to [-1, 1], or undefined for encodings the emulator does not decode. */
function sampleReader(fmt: WavFmt, bigEndian: boolean): SampleReader | undefined {
  // WAVE_FORMAT_EXTENSIBLE keeps the real format tag in the first field of its subformat GUID.
  const tag = fmt.audioFormat === WAVE_FORMAT_EXTENSIBLE ? (fmt.subformat[0] ?? 0) : fmt.audioFormat;
  const bits = fmt.bitsPerSample;
  if (tag === WAVE_FORMAT_PCM) {
    switch (bits) {
      case 8:
        // 8-bit WAV samples are unsigned with 128 as zero.
        return (bytes, offset) => ((bytes[offset] ?? 128) - 128) / 128;
      case 16:
        return bigEndian
          ? (bytes, offset) => bytes.readInt16BE(offset) / 32768
          : (bytes, offset) => bytes.readInt16LE(offset) / 32768;
      case 24:
        return bigEndian
          ? (bytes, offset) => bytes.readIntBE(offset, 3) / 8388608
          : (bytes, offset) => bytes.readIntLE(offset, 3) / 8388608;
      case 32:
        return bigEndian
          ? (bytes, offset) => bytes.readInt32BE(offset) / 2147483648
          : (bytes, offset) => bytes.readInt32LE(offset) / 2147483648;
      default:
        return undefined;
    }
  }
  if (tag === WAVE_FORMAT_IEEE_FLOAT) {
    if (bits === 32) {
      return bigEndian ? (bytes, offset) => bytes.readFloatBE(offset) : (bytes, offset) => bytes.readFloatLE(offset);
    }
    if (bits === 64) {
      return bigEndian ? (bytes, offset) => bytes.readDoubleBE(offset) : (bytes, offset) => bytes.readDoubleLE(offset);
    }
    return undefined;
  }
  if (tag === WAVE_FORMAT_ALAW && bits === 8) {
    return (bytes, offset) => (ALAW_DECODE_TABLE[bytes[offset] ?? 0xd5] ?? 0) / 32768;
  }
  if (tag === WAVE_FORMAT_MULAW && bits === 8) {
    return (bytes, offset) => (MULAW_DECODE_TABLE[bytes[offset] ?? 0xff] ?? 0) / 32768;
  }
  return undefined;
}

/**
 * Measures a WAV file in intervals of `intervalMs`. Throws an Error that
 * describes the problem when the file cannot be parsed, and returns
 * undefined for a valid file in an encoding the emulator does not decode
 * (ADPCM, for instance).
 */
export function measureWav(data: Buffer, intervalMs: number): WavMeasurement | undefined {
  const wav = new wavefile.WaveFile();
  wav.fromBuffer(data);
  const fmt = wav.fmt as WavFmt;
  const samples = (wav.data as { samples: Uint8Array }).samples;
  const channels = fmt.numChannels;
  const sampleRateHz = fmt.sampleRate;
  if (!(channels >= 1) || !(sampleRateHz >= 1)) {
    throw new Error(`fmt chunk declares ${channels} channel(s) at ${sampleRateHz} Hz`);
  }
  const read = sampleReader(fmt, wav.container === 'RIFX');
  if (read === undefined) {
    return undefined;
  }
  const bytesPerSample = fmt.bitsPerSample / 8;
  const frameBytes = bytesPerSample * channels;
  const bytes = Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength);
  const frameCount = Math.floor(bytes.length / frameBytes);

  const meter = new LevelMeter({ sampleRateHz, channels, intervalMs });
  const measurements: LevelMeasurement[] = [];
  const block = new Float32Array(BLOCK_FRAMES * channels);
  for (let firstFrame = 0; firstFrame < frameCount; firstFrame += BLOCK_FRAMES) {
    const blockFrames = Math.min(BLOCK_FRAMES, frameCount - firstFrame);
    const blockSamples = blockFrames * channels;
    for (let i = 0; i < blockSamples; i += 1) {
      block[i] = read(bytes, (firstFrame * channels + i) * bytesPerSample);
    }
    measurements.push(...meter.push(block.subarray(0, blockSamples)));
  }
  const last = meter.flush();
  if (last !== undefined) {
    measurements.push(last);
  }
  return { sampleRateHz, channels, durationMs: meter.durationMs, measurements };
}

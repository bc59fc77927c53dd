/**
 * Decoders of RTP audio payloads to interleaved float PCM, one per payload
 * type in use on a stream. `ticksOfFrames` converts decoded frames to RTP
 * clock ticks, which the timeline needs to find gaps.
 */
import { ALAW_DECODE_TABLE, MULAW_DECODE_TABLE } from '../../audio/g711.ts';
import { G722Decoder } from '../../audio/g722-decoder.ts';
import { OpusDecoder } from '../../audio/opus-decoder.ts';
import { takeSamples } from '../../audio/sample-slab.ts';
import { AudioFormatError } from '../../errors.ts';
import type { Logger } from '../../logger.ts';
import type { PayloadFormat } from './payload-types.ts';

const INT16_SCALE = 1 / 32768;

/** Scales a G.711 decode table to floats, so that a payload decodes in one pass. */
function toFloatTable(table: Int16Array): Float32Array {
  return Float32Array.from(table, (sample) => sample * INT16_SCALE);
}

const MULAW_FLOAT_TABLE = toFloatTable(MULAW_DECODE_TABLE);
const ALAW_FLOAT_TABLE = toFloatTable(ALAW_DECODE_TABLE);

export interface PayloadDecoder {
  readonly format: PayloadFormat;
  /** Rate of the decoded samples, in Hz. */
  readonly sampleRateHz: number;
  readonly channels: number;
  /** The output encoding whose bytes equal this payload format's (G.711 only). Blocks from this decoder carry their payload. */
  readonly encodedAs?: 'mulaw' | 'alaw';
  /** True when decode() returns a promise: G.722 runs in ffmpeg, and its results come in payload order. */
  readonly asynchronous: boolean;
  /**
   * Decodes one payload. Synchronous codecs return the samples; G.722 runs
   * in ffmpeg and returns a promise that resolves in payload order.
   *
   * @throws AudioFormatError when the payload is not valid for the format.
   */
  decode(payload: Buffer): Float32Array | Promise<Float32Array>;
  /** Concealment of lost audio; absent when the codec has none and silence is used. */
  conceal?(frames: number): Float32Array;
  /** Ends the input and frees the decoder; an asynchronous decoder first finishes what it was given. */
  close(): Promise<void>;
}

/** Creates a decoder for one payload type on one stream. */
export function createPayloadDecoder(format: PayloadFormat, logger: Logger): PayloadDecoder {
  switch (format.encoding) {
    case 'pcmu':
      return new G711PayloadDecoder(format, MULAW_FLOAT_TABLE, 'mulaw');
    case 'pcma':
      return new G711PayloadDecoder(format, ALAW_FLOAT_TABLE, 'alaw');
    case 'l16':
      return new L16PayloadDecoder(format);
    case 'opus':
      return new OpusPayloadDecoder(format);
    case 'g722':
      return new G722PayloadDecoder(format, logger);
    case 'telephone-event':
    case 'cn':
      throw new Error(`payload type ${format.payloadType} (${format.rtpmap}) carries no audio to decode`);
  }
}

/** RTP clock ticks covered by `frames` decoded sample frames of `decoder`. */
export function ticksOfFrames(decoder: PayloadDecoder, frames: number): number {
  return Math.round((frames * decoder.format.clockRateHz) / decoder.sampleRateHz);
}

class G711PayloadDecoder implements PayloadDecoder {
  readonly format: PayloadFormat;
  readonly asynchronous = false;
  readonly sampleRateHz: number;
  readonly channels: number;
  readonly encodedAs: 'mulaw' | 'alaw';
  private readonly table: Float32Array;

  /** `table` maps each of the 256 codes to its linear value over 32768. */
  constructor(format: PayloadFormat, table: Float32Array, encodedAs: 'mulaw' | 'alaw') {
    this.format = format;
    this.encodedAs = encodedAs;
    this.sampleRateHz = format.sampleRateHz;
    this.channels = format.channels;
    this.table = table;
  }

  decode(payload: Buffer): Float32Array {
    if (payload.length % this.channels !== 0) {
      throw new AudioFormatError(
        `${this.format.rtpmap} payload of ${payload.length} bytes is not a whole number of ${this.channels}-channel samples`,
      );
    }
    const table = this.table;
    const samples = takeSamples(payload.length);
    for (let index = 0; index < payload.length; index++) {
      samples[index] = table[payload[index]!]!;
    }
    return samples;
  }

  async close(): Promise<void> {}
}

/** L16 is 16-bit signed PCM in network byte order (RFC 3551 §4.5.11). */
class L16PayloadDecoder implements PayloadDecoder {
  readonly format: PayloadFormat;
  readonly asynchronous = false;
  readonly sampleRateHz: number;
  readonly channels: number;

  constructor(format: PayloadFormat) {
    this.format = format;
    this.sampleRateHz = format.sampleRateHz;
    this.channels = format.channels;
  }

  decode(payload: Buffer): Float32Array {
    const frameBytes = 2 * this.channels;
    if (payload.length % frameBytes !== 0) {
      throw new AudioFormatError(
        `${this.format.rtpmap} payload of ${payload.length} bytes is not a whole number of ${frameBytes}-byte sample frames`,
      );
    }
    const samples = takeSamples(payload.length / 2);
    for (let index = 0; index < samples.length; index++) {
      samples[index] = payload.readInt16BE(index * 2) * INT16_SCALE;
    }
    return samples;
  }

  async close(): Promise<void> {}
}

/**
 * Opus decodes at 48 kHz, the rate of its RTP clock (RFC 7587 §4.1), so one
 * decoded frame is one tick. The channel count follows the rtpmap, which
 * RFC 7587 fixes at 2 whatever the sender encodes; mono senders decode to
 * two equal channels.
 */
class OpusPayloadDecoder implements PayloadDecoder {
  readonly format: PayloadFormat;
  readonly asynchronous = false;
  readonly sampleRateHz = 48000;
  readonly channels: 1 | 2;
  private readonly decoder: OpusDecoder;

  constructor(format: PayloadFormat) {
    this.format = format;
    this.channels = format.channels === 1 ? 1 : 2;
    this.decoder = new OpusDecoder(48000, this.channels);
  }

  decode(payload: Buffer): Float32Array {
    return this.decoder.decode(payload);
  }

  conceal(frames: number): Float32Array {
    return this.decoder.conceal(frames);
  }

  async close(): Promise<void> {
    this.decoder.destroy();
  }
}

class G722PayloadDecoder implements PayloadDecoder {
  readonly format: PayloadFormat;
  readonly asynchronous = true;
  readonly sampleRateHz: number;
  readonly channels = 1;
  private readonly decoder: G722Decoder;

  constructor(format: PayloadFormat, logger: Logger) {
    this.format = format;
    this.sampleRateHz = format.sampleRateHz;
    this.decoder = new G722Decoder({ logger });
  }

  decode(payload: Buffer): Promise<Float32Array> {
    return this.decoder.decode(payload);
  }

  close(): Promise<void> {
    return this.decoder.close();
  }
}

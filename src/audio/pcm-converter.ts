/**
 * Conversion of a source's float PCM blocks into the encoded bytes of one
 * stream: channel selection and mixing, resampling, then s16le, mu-law or
 * A-law encoding.
 */
import { endianness } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';

import type { OutputConfig } from '../config/types.ts';
import { AudioFormatError } from '../errors.ts';
import { createSilentLogger, type Logger } from '../logger.ts';
import { bytesPerSample, floatToInt16, type AudioFormat, type PcmBlock } from './format.ts';
import { ALAW_DECODE_TABLE, ALAW_ENCODE_TABLE, MULAW_DECODE_TABLE, MULAW_ENCODE_TABLE } from './g711.ts';
import { ChannelMixer } from './channel-mixer.ts';
import { loadResamplerLibrary, Resampler } from './resampler.ts';

/** True when an Int16Array's bytes are already s16le, as on x86-64 and arm64. */
const HOST_IS_LITTLE_ENDIAN = endianness() === 'LE';

export interface PcmConverterOptions {
  output: OutputConfig;
  /** Rate of the blocks the source emits; a later block at another rate rebuilds the conversion. */
  inputSampleRateHz: number;
  inputChannels: number;
  /** 0-based input channels this stream takes, mixed as `ChannelMixer` describes; all channels when omitted. */
  channelSelection?: number[];
  logger?: Logger;
}

/** Input side of the conversion, rebuilt when a block arrives in another format. */
interface InputStage {
  sampleRateHz: number;
  channels: number;
  mixer: ChannelMixer;
  resampler: Resampler;
}

/**
 * The conversion of one stream, without Node streams: each call converts
 * one block synchronously. The alias stream of a live source calls it
 * straight from the source's data event; `PcmConverter` wraps it for
 * sources that wait for their consumer.
 *
 * Float samples become 16-bit integers by `round(x * 32768)` clamped to
 * [-32768, 32767], so 16-bit input (read as `k / 32768`) comes out with the
 * same values. Mixing, resampling and encoding reuse their buffers from
 * block to block.
 */
export class PcmConversion {
  readonly outputFormat: AudioFormat;

  private stage: InputStage;
  private readonly channelSelection: number[] | undefined;
  private readonly log: Logger;
  private formatChangeCount = 0;
  private encoded = Buffer.alloc(0);
  /** The last view of `encoded` handed out. Blocks of one size, as RTP gives, reuse it. */
  private encodedView = Buffer.alloc(0);

  private constructor(options: PcmConverterOptions, stage: InputStage, log: Logger) {
    this.outputFormat = {
      encoding: options.output.format,
      sampleRateHz: options.output.sample_rate_hz,
      channels: options.output.channels,
    };
    this.stage = stage;
    this.channelSelection = options.channelSelection;
    this.log = log;
  }

  /**
   * Builds the conversion for a source's format, and loads the resampler
   * library so that a later change of format converts without waiting.
   *
   * @throws AudioFormatError when the input format or the channel selection cannot be converted to the output.
   */
  static async create(options: PcmConverterOptions): Promise<PcmConversion> {
    await loadResamplerLibrary();
    const log = options.logger ?? createSilentLogger();
    const stage = createInputStage(options.inputSampleRateHz, options.inputChannels, options.channelSelection, options.output);
    return new PcmConversion(options, stage, log);
  }

  /** Blocks that arrived in a format other than the one before them. */
  get formatChanges(): number {
    return this.formatChangeCount;
  }

  /** Output sample frames that the resampler holds back until more input arrives; 0 without resampling. */
  get delayFrames(): number {
    return this.stage.resampler.delayFrames;
  }

  /**
   * Converts one block and hands the encoded bytes to `emit`, which may be
   * called twice when the block's format differs from the one before (the
   * old filter's tail first). The Buffer given to `emit` is reused by the
   * next call, so copy what must outlive it.
   *
   * @throws AudioFormatError when the block is malformed or its format cannot be converted.
   */
  convert(block: PcmBlock, emit: (encoded: Buffer) => void): void {
    if (block.sampleRateHz !== this.stage.sampleRateHz || block.channels !== this.stage.channels) {
      this.changeInputFormat(block, emit);
    }
    const resampler = this.stage.resampler;
    const encoded = block.encoded;
    if (encoded !== undefined && this.stage.mixer.mode === 'identity') {
      if (!resampler.passthrough) {
        // G.711 in, resampled: the codes go into the resampler as 16-bit values, without floats in between.
        const table = encoded.encoding === 'mulaw' ? MULAW_DECODE_TABLE : ALAW_DECODE_TABLE;
        this.emitEncodedInt16(resampler.processCodesToInt16(encoded.data, table), emit);
        return;
      }
      if (encoded.encoding === this.outputFormat.encoding) {
        // G.711 in and the same law out: the bytes go as they came, which is exact and spares decoding and encoding.
        emit(encoded.data);
        return;
      }
    }
    if (block.samples.length % block.channels !== 0) {
      throw new AudioFormatError(
        `PCM block of ${block.samples.length} samples is not a whole number of ${block.channels}-channel frames`,
      );
    }
    const mixed = this.stage.mixer.mix(block.samples);
    if (resampler.passthrough) {
      this.emitEncoded(mixed, emit);
      return;
    }
    // The resampler works in 16 bits, so its output is encoded from there, without a round trip through floats.
    this.emitEncodedInt16(resampler.processToInt16(mixed), emit);
  }

  /** Hands the resampler's held-back tail to `emit` and frees it. Call once at the end of the stream. */
  finish(emit: (encoded: Buffer) => void): void {
    this.emitEncoded(this.stage.resampler.flush(), emit);
    this.stage.resampler.destroy();
  }

  destroy(): void {
    this.stage.resampler.destroy();
  }

  /** Drains the old resampler so no audio is lost, then builds the stage for the block's format. */
  private changeInputFormat(block: PcmBlock, emit: (encoded: Buffer) => void): void {
    const previous = this.stage;
    this.formatChangeCount += 1;
    const fields = {
      from: { sampleRateHz: previous.sampleRateHz, channels: previous.channels },
      to: { sampleRateHz: block.sampleRateHz, channels: block.channels },
      formatChanges: this.formatChangeCount,
    };
    // The first change is worth an operator's attention; a source that keeps switching would flood the log.
    if (this.formatChangeCount === 1) {
      this.log.info(fields, 'input audio format changed; rebuilding the converter');
    } else {
      this.log.debug(fields, 'input audio format changed; rebuilding the converter');
    }
    const next = createInputStage(block.sampleRateHz, block.channels, this.channelSelection, {
      format: this.outputFormat.encoding,
      sample_rate_hz: this.outputFormat.sampleRateHz,
      channels: this.outputFormat.channels,
    });
    this.emitEncoded(previous.resampler.flush(), emit);
    previous.resampler.destroy();
    this.stage = next;
  }

  private emitEncodedInt16(samples: Int16Array, emit: (encoded: Buffer) => void): void {
    if (samples.length === 0) {
      return;
    }
    const encoding = this.outputFormat.encoding;
    if (encoding === 's16le' && HOST_IS_LITTLE_ENDIAN) {
      emit(Buffer.from(samples.buffer, samples.byteOffset, samples.byteLength));
      return;
    }
    const bytes = this.encodedBuffer(samples.length);
    encodeInt16Into(samples, encoding, bytes);
    emit(bytes);
  }

  private emitEncoded(samples: Float32Array, emit: (encoded: Buffer) => void): void {
    if (samples.length === 0) {
      return;
    }
    const bytes = this.encodedBuffer(samples.length);
    encodeSamplesInto(samples, this.outputFormat.encoding, bytes);
    emit(bytes);
  }

  /** Returns a view of the reused output buffer, grown when needed, for `sampleCount` encoded samples. */
  private encodedBuffer(sampleCount: number): Buffer {
    const byteLength = sampleCount * bytesPerSample(this.outputFormat.encoding);
    if (this.encodedView.length === byteLength) {
      return this.encodedView;
    }
    if (this.encoded.length < byteLength) {
      this.encoded = Buffer.allocUnsafe(byteLength);
    }
    this.encodedView = this.encoded.subarray(0, byteLength);
    return this.encodedView;
  }
}

/**
 * Transform from `PcmBlock` objects to Buffers of the output encoding, for
 * sources that wait for their consumer (files). Each output Buffer is a
 * copy, because the downstream stream keeps it after the push.
 */
export class PcmConverter extends Transform {
  readonly outputFormat: AudioFormat;
  private readonly conversion: PcmConversion;
  private readonly pushCopy = (encoded: Buffer): void => {
    this.push(Buffer.from(encoded));
  };

  private constructor(conversion: PcmConversion) {
    super({ writableObjectMode: true, readableObjectMode: false });
    this.conversion = conversion;
    this.outputFormat = conversion.outputFormat;
  }

  /**
   * Builds the converter for a source's format.
   *
   * @throws AudioFormatError when the input format or the channel selection cannot be converted to the output.
   */
  static async create(options: PcmConverterOptions): Promise<PcmConverter> {
    return new PcmConverter(await PcmConversion.create(options));
  }

  /** Blocks that arrived in a format other than the one before them. */
  get formatChanges(): number {
    return this.conversion.formatChanges;
  }

  override _transform(block: PcmBlock, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.conversion.convert(block, this.pushCopy);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.conversion.finish(this.pushCopy);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _destroy(error: Error | null, callback: (error: Error | null) => void): void {
    this.conversion.destroy();
    callback(error);
  }
}

function createInputStage(
  sampleRateHz: number,
  channels: number,
  channelSelection: number[] | undefined,
  output: Pick<OutputConfig, 'format' | 'sample_rate_hz' | 'channels'>,
): InputStage {
  if (!Number.isInteger(sampleRateHz) || sampleRateHz <= 0) {
    throw new AudioFormatError(`invalid input sample rate ${sampleRateHz} Hz; it must be a positive whole number`);
  }
  const mixer = new ChannelMixer({
    inputChannels: channels,
    outputChannels: output.channels,
    ...(channelSelection === undefined ? {} : { channelSelection }),
  });
  const resampler = Resampler.createLoaded({
    channels: output.channels,
    inputSampleRateHz: sampleRateHz,
    outputSampleRateHz: output.sample_rate_hz,
  });
  return { sampleRateHz, channels, mixer, resampler };
}

/** Encodes float samples into a new Buffer of the given encoding. */
export function encodeSamples(samples: Float32Array, encoding: AudioFormat['encoding']): Buffer {
  const bytes = Buffer.allocUnsafe(samples.length * bytesPerSample(encoding));
  encodeSamplesInto(samples, encoding, bytes);
  return bytes;
}

/** Encodes float samples into `bytes`, whose length must equal their encoded length. */
function encodeSamplesInto(samples: Float32Array, encoding: AudioFormat['encoding'], bytes: Buffer): void {
  switch (encoding) {
    case 's16le':
      for (let index = 0; index < samples.length; index++) {
        const value = floatToInt16(samples[index]!);
        // Byte by byte, so the output is little-endian on any host.
        bytes[2 * index] = value & 0xff;
        bytes[2 * index + 1] = (value >> 8) & 0xff;
      }
      return;
    case 'mulaw':
    case 'alaw': {
      const table = encoding === 'mulaw' ? MULAW_ENCODE_TABLE : ALAW_ENCODE_TABLE;
      for (let index = 0; index < samples.length; index++) {
        bytes[index] = table[floatToInt16(samples[index]!) + 32768]!;
      }
      return;
    }
  }
}

/** Encodes 16-bit samples into `bytes`, whose length must equal their encoded length. */
function encodeInt16Into(samples: Int16Array, encoding: AudioFormat['encoding'], bytes: Buffer): void {
  switch (encoding) {
    case 's16le':
      for (let index = 0; index < samples.length; index++) {
        const value = samples[index]!;
        // Byte by byte, so the output is little-endian on any host.
        bytes[2 * index] = value & 0xff;
        bytes[2 * index + 1] = (value >> 8) & 0xff;
      }
      return;
    case 'mulaw':
    case 'alaw': {
      const table = encoding === 'mulaw' ? MULAW_ENCODE_TABLE : ALAW_ENCODE_TABLE;
      for (let index = 0; index < samples.length; index++) {
        bytes[index] = table[samples[index]! + 32768]!;
      }
      return;
    }
  }
}

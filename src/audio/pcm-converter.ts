/**
 * Conversion of a source's float PCM blocks into the encoded bytes of one
 * stream: channel selection and mixing, resampling, then s16le, mu-law or
 * A-law encoding.
 */
import { Transform, type TransformCallback } from 'node:stream';

import type { OutputConfig } from '../config/types.ts';
import { AudioFormatError } from '../errors.ts';
import { createSilentLogger, type Logger } from '../logger.ts';
import type { AudioFormat, PcmBlock } from './format.ts';
import { ALAW_ENCODE_TABLE, MULAW_ENCODE_TABLE } from './g711.ts';
import { ChannelMixer } from './channel-mixer.ts';
import { Resampler } from './resampler.ts';

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
 * Transform from `PcmBlock` objects to Buffers of the output encoding.
 *
 * Float samples become 16-bit integers by `round(x * 32768)` clamped to
 * [-32768, 32767], so 16-bit input (read as `k / 32768`) comes out with the
 * same values. Mixing and resampling reuse their buffers from block to block.
 * NOTE: each output Buffer is still allocated per block, because the
 * downstream stream keeps it after the push.
 */
export class PcmConverter extends Transform {
  readonly outputFormat: AudioFormat;

  private stage: InputStage;
  private readonly channelSelection: number[] | undefined;
  private readonly log: Logger;
  private formatChangeCount = 0;

  private constructor(options: PcmConverterOptions, stage: InputStage, log: Logger) {
    super({ writableObjectMode: true, readableObjectMode: false });
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
   * Builds the converter for a source's format.
   *
   * @throws AudioFormatError when the input format or the channel selection cannot be converted to the output.
   */
  static async create(options: PcmConverterOptions): Promise<PcmConverter> {
    const log = options.logger ?? createSilentLogger();
    const stage = await createInputStage(
      options.inputSampleRateHz,
      options.inputChannels,
      options.channelSelection,
      options.output,
    );
    return new PcmConverter(options, stage, log);
  }

  /** Blocks that arrived in a format other than the one before them. */
  get formatChanges(): number {
    return this.formatChangeCount;
  }

  override _transform(block: PcmBlock, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (block.sampleRateHz === this.stage.sampleRateHz && block.channels === this.stage.channels) {
      this.convertBlock(block, callback);
      return;
    }
    this.changeInputFormat(block).then(
      () => this.convertBlock(block, callback),
      (error: unknown) => callback(error as Error),
    );
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.pushEncoded(this.stage.resampler.flush());
      this.stage.resampler.destroy();
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _destroy(error: Error | null, callback: (error: Error | null) => void): void {
    this.stage.resampler.destroy();
    callback(error);
  }

  private convertBlock(block: PcmBlock, callback: TransformCallback): void {
    try {
      if (block.samples.length % block.channels !== 0) {
        throw new AudioFormatError(
          `PCM block of ${block.samples.length} samples is not a whole number of ${block.channels}-channel frames`,
        );
      }
      const mixed = this.stage.mixer.mix(block.samples);
      this.pushEncoded(this.stage.resampler.process(mixed));
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  /** Drains the old resampler so no audio is lost, then builds the stage for the block's format. */
  private async changeInputFormat(block: PcmBlock): Promise<void> {
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
    const next = await createInputStage(block.sampleRateHz, block.channels, this.channelSelection, {
      format: this.outputFormat.encoding,
      sample_rate_hz: this.outputFormat.sampleRateHz,
      channels: this.outputFormat.channels,
    });
    this.pushEncoded(previous.resampler.flush());
    previous.resampler.destroy();
    this.stage = next;
  }

  private pushEncoded(samples: Float32Array): void {
    if (samples.length === 0) {
      return;
    }
    this.push(encodeSamples(samples, this.outputFormat.encoding));
  }
}

async function createInputStage(
  sampleRateHz: number,
  channels: number,
  channelSelection: number[] | undefined,
  output: Pick<OutputConfig, 'format' | 'sample_rate_hz' | 'channels'>,
): Promise<InputStage> {
  if (!Number.isInteger(sampleRateHz) || sampleRateHz <= 0) {
    throw new AudioFormatError(`invalid input sample rate ${sampleRateHz} Hz; it must be a positive whole number`);
  }
  const mixer = new ChannelMixer({
    inputChannels: channels,
    outputChannels: output.channels,
    ...(channelSelection === undefined ? {} : { channelSelection }),
  });
  const resampler = await Resampler.create({
    channels: output.channels,
    inputSampleRateHz: sampleRateHz,
    outputSampleRateHz: output.sample_rate_hz,
  });
  return { sampleRateHz, channels, mixer, resampler };
}

/** Converts a float sample to 16 bits: `round(x * 32768)` clamped, exact for values of the form k / 32768. */
function toInt16(sample: number): number {
  const scaled = Math.round(sample * 32768);
  if (scaled > 32767) {
    return 32767;
  }
  if (scaled < -32768) {
    return -32768;
  }
  // NaN from a broken source becomes silence instead of poisoning the encoder tables.
  return scaled === scaled ? scaled : 0;
}

/** Encodes float samples into a new Buffer of the given encoding. */
export function encodeSamples(samples: Float32Array, encoding: AudioFormat['encoding']): Buffer {
  switch (encoding) {
    case 's16le': {
      const bytes = Buffer.allocUnsafe(samples.length * 2);
      for (let index = 0; index < samples.length; index++) {
        const value = toInt16(samples[index]!);
        // Byte by byte, so the output is little-endian on any host.
        bytes[2 * index] = value & 0xff;
        bytes[2 * index + 1] = (value >> 8) & 0xff;
      }
      return bytes;
    }
    case 'mulaw':
    case 'alaw': {
      const table = encoding === 'mulaw' ? MULAW_ENCODE_TABLE : ALAW_ENCODE_TABLE;
      const bytes = Buffer.allocUnsafe(samples.length);
      for (let index = 0; index < samples.length; index++) {
        bytes[index] = table[toInt16(samples[index]!) + 32768]!;
      }
      return bytes;
    }
  }
}

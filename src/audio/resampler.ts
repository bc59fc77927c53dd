/**
 * Streaming sample-rate conversion of interleaved float PCM, one instance
 * per stream, on libsamplerate translated to JavaScript
 * (@alexanderolsen/libsamplerate-js, its "full" API that keeps filter state
 * between calls). Version 2.1.2 ships no WebAssembly despite its
 * description: dist/libsamplerate.js is plain JavaScript.
 */
import libsamplerate from '@alexanderolsen/libsamplerate-js';

import { AudioFormatError } from '../errors.ts';

type SampleRateConverter = Awaited<ReturnType<typeof libsamplerate.create>>;

/**
 * SRC_SINC_FASTEST: libsamplerate's 97 dB SNR with an 80 % passband (MEDIUM
 * has 90 %) is plenty for speech, at under half of MEDIUM's CPU time. For
 * 20 ms of 48 kHz to 16 kHz we measured about 0.2 ms against 0.45 to 0.65 ms
 * (libsamplerate-js 2.1.2, one shared x86-64 core, so an estimate).
 */
const CONVERTER_TYPE = libsamplerate.ConverterType.SRC_SINC_FASTEST;

/** The library's rate limits, checked here to raise our error instead of its bare string. */
const MAX_SAMPLE_RATE_HZ = 192000;
const MAX_CHANNELS = 128;

/**
 * Input frames per call into the library. The library's transfer
 * buffers hold 1,008,000 floats and it splits (and allocates) above that, so
 * long inputs are cut here instead.
 */
const MAX_FRAMES_PER_CALL = 8192;

/** Output frames reserved beyond ratio * input per call into the library. */
const SPARE_OUTPUT_FRAMES = 16;

/** Silence fed per call to push the filter's delayed tail out at the end. */
const DRAIN_FRAMES = 256;

export interface ResamplerOptions {
  channels: number;
  inputSampleRateHz: number;
  outputSampleRateHz: number;
}

/**
 * Converts interleaved float PCM from one sample rate to another across
 * successive chunks without discontinuities at chunk boundaries. Equal rates
 * pass samples through untouched. Output lags input by the filter's delay
 * of about 1 ms. At the end of the stream `flush()` releases that tail, so
 * the output length is the input length times the rate ratio.
 */
export class Resampler {
  readonly channels: number;
  readonly inputSampleRateHz: number;
  readonly outputSampleRateHz: number;
  /** True when the rates are equal and `process` returns its input. */
  readonly passthrough: boolean;

  private converter: SampleRateConverter | undefined;
  private output = new Float32Array(0);
  private readonly frameCount = { frames: 0 };
  private inputFrames = 0;
  private outputFrames = 0;
  private destroyed = false;

  private constructor(options: ResamplerOptions, converter: SampleRateConverter | undefined) {
    this.channels = options.channels;
    this.inputSampleRateHz = options.inputSampleRateHz;
    this.outputSampleRateHz = options.outputSampleRateHz;
    this.passthrough = converter === undefined;
    this.converter = converter;
  }

  /**
   * Creates a resampler. This instantiates a copy of the library (about 10 ms
   * of CPU), so call it once per stream at setup, never per chunk.
   *
   * @throws AudioFormatError when a rate or the channel count is outside libsamplerate's limits.
   */
  static async create(options: ResamplerOptions): Promise<Resampler> {
    validateOptions(options);
    if (options.inputSampleRateHz === options.outputSampleRateHz) {
      return new Resampler(options, undefined);
    }
    // NOTE: every instance allocates its own heap of about 26 MB of
    // address space. Only the touched pages (under 2 MB) become resident.
    const converter = await libsamplerate.create(
      options.channels,
      options.inputSampleRateHz,
      options.outputSampleRateHz,
      { converterType: CONVERTER_TYPE },
    );
    return new Resampler(options, converter);
  }

  /**
   * Resamples the next chunk of interleaved samples. Returns the input
   * itself when passing through; otherwise a view of an internal buffer
   * that the next call overwrites, so copy what must outlive it.
   */
  process(input: Float32Array): Float32Array {
    const converter = this.requireConverter();
    if (converter === undefined) {
      return input;
    }
    if (input.length % this.channels !== 0) {
      throw new RangeError(
        `resampler input of ${input.length} samples is not a whole number of ${this.channels}-channel frames`,
      );
    }
    const inputFrames = input.length / this.channels;
    this.inputFrames += inputFrames;
    let written = 0;
    for (let startFrame = 0; startFrame < inputFrames; startFrame += MAX_FRAMES_PER_CALL) {
      const endFrame = Math.min(inputFrames, startFrame + MAX_FRAMES_PER_CALL);
      const piece = input.subarray(startFrame * this.channels, endFrame * this.channels);
      written = this.convertInto(converter, piece, written);
    }
    this.outputFrames += written / this.channels;
    return this.output.subarray(0, written);
  }

  /**
   * Returns the samples still inside the filter, so that the whole output is
   * as long as the whole input times the rate ratio (rounded to a frame).
   * Call once at the end of the stream; later `process` calls start a new
   * stretch of audio that is not aligned with the first.
   */
  flush(): Float32Array {
    const converter = this.requireConverter();
    if (converter === undefined) {
      return new Float32Array(0);
    }
    const expectedFrames = Math.round((this.inputFrames * this.outputSampleRateHz) / this.inputSampleRateHz);
    const missingFrames = expectedFrames - this.outputFrames;
    const silence = new Float32Array(DRAIN_FRAMES * this.channels);
    let written = 0;
    // The filter delay of SRC_SINC_FASTEST is far below the bound, which only guards against a loop without end.
    for (let calls = 0; written / this.channels < missingFrames && calls < 64; calls++) {
      written = this.convertInto(converter, silence, written);
    }
    const tailFrames = Math.max(0, Math.min(missingFrames, written / this.channels));
    this.inputFrames = 0;
    this.outputFrames = 0;
    return this.output.slice(0, tailFrames * this.channels);
  }

  /** Frees the library's state. Safe to call twice; any later call to `process` throws. */
  destroy(): void {
    if (this.destroyed) {
      return;
    }
    this.destroyed = true;
    this.converter?.destroy();
    this.converter = undefined;
  }

  private requireConverter(): SampleRateConverter | undefined {
    if (this.destroyed) {
      throw new Error('resampler used after destroy(); create a new one');
    }
    return this.converter;
  }

  /** Resamples `piece` and appends the result at `offset` of the output buffer; returns the new length in samples. */
  private convertInto(converter: SampleRateConverter, piece: Float32Array, offset: number): number {
    // The library rejects an output array shorter than ratio * input length;
    // the spare frames cover the rounding of one call's output count.
    const pieceCapacity =
      Math.ceil((piece.length * this.outputSampleRateHz) / this.inputSampleRateHz) + SPARE_OUTPUT_FRAMES * this.channels;
    this.reserve(offset + pieceCapacity);
    converter.full(piece, this.output.subarray(offset, offset + pieceCapacity), this.frameCount);
    const writtenSamples = this.frameCount.frames * this.channels;
    if (this.frameCount.frames < 0 || writtenSamples > pieceCapacity) {
      // A typed array drops writes past its end, so an overrun would lose audio without a trace.
      throw new Error(
        `libsamplerate returned ${this.frameCount.frames} frames for ${piece.length / this.channels} input frames, outside the expected range`,
      );
    }
    return offset + writtenSamples;
  }

  private reserve(samples: number): void {
    if (this.output.length >= samples) {
      return;
    }
    const grown = new Float32Array(Math.max(samples, this.output.length * 2));
    grown.set(this.output);
    this.output = grown;
  }
}

function validateOptions(options: ResamplerOptions): void {
  const { channels, inputSampleRateHz, outputSampleRateHz } = options;
  if (!Number.isInteger(channels) || channels < 1 || channels > MAX_CHANNELS) {
    throw new AudioFormatError(`cannot resample ${channels} channels; the resampler takes 1 to ${MAX_CHANNELS}`);
  }
  for (const [name, rateHz] of [
    ['input', inputSampleRateHz],
    ['output', outputSampleRateHz],
  ] as const) {
    if (!Number.isInteger(rateHz) || rateHz < 1 || rateHz > MAX_SAMPLE_RATE_HZ) {
      throw new AudioFormatError(
        `cannot resample at an ${name} rate of ${rateHz} Hz; the resampler takes whole rates from 1 to ${MAX_SAMPLE_RATE_HZ} Hz`,
      );
    }
  }
}

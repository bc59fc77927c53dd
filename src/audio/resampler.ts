/**
 * Streaming sample-rate conversion of interleaved float PCM, one instance
 * per stream, on the Speex resampler of speexdsp (the one Asterisk's
 * codec_resample uses), compiled to WebAssembly with SIMD by the
 * @echogarden/speex-resampler-wasm package. All instances share one
 * WebAssembly module, so a stream costs a few KiB of filter state and
 * buffers (about 7 KiB for mono from 8 to 16 kHz, counted from the
 * allocations), not a copy of the library.
 */
import { AudioFormatError } from '../errors.ts';
import { floatToInt16 } from './format.ts';

/**
 * Speex quality 3, a 48-tap filter. With a 1 kHz tone at half scale in 16
 * bits, it measured 85 dB signal-to-error from 8 to 16 kHz, and 97 dB (the
 * 16-bit floor) from 48 to 16 kHz. From 8 to 16 kHz in 20 ms chunks it took
 * about 670 µs of CPU per stream-second on a shared x86-64 core (an
 * estimate). Quality 5 reaches 97 dB from 8 kHz at 1.7 times the CPU, which
 * G.711 input, at about 38 dB signal-to-quantization noise, cannot use.
 * The CPU figure is for a build without SIMD. The SIMD build took about
 * 200 µs for the same work.
 */
const SPEEX_QUALITY = 3;

/** Filter length of quality 3 in speexdsp's quality table, before stretching for downsampling. */
const SPEEX_BASE_FILTER_LENGTH = 48;

/** Rate and channel limits, checked here to raise our error instead of the library's bare code. */
const MAX_SAMPLE_RATE_HZ = 192000;
const MAX_CHANNELS = 128;

/** Input frames copied into the library per call, so its buffers stay small whatever the chunk size. */
const MAX_FRAMES_PER_CALL = 1024;

/** Output frames reserved beyond ratio * input per call into the library. */
const SPARE_OUTPUT_FRAMES = 16;

/** Silence fed per call to push the filter's delayed tail out at the end. */
const DRAIN_FRAMES = 256;

/** The parts of the package's Emscripten module that this file uses. */
interface SpeexModule {
  HEAPU8: Uint8Array;
  HEAP16: Int16Array;
  HEAPU32: Uint32Array;
  _malloc(bytes: number): number;
  _free(pointer: number): void;
  _speex_resampler_init(channels: number, inRate: number, outRate: number, quality: number, errorPointer: number): number;
  _speex_resampler_destroy(state: number): void;
  _speex_resampler_process_interleaved_int(
    state: number,
    input: number,
    inputFramesPointer: number,
    output: number,
    outputFramesPointer: number,
  ): number;
  _speex_resampler_strerror(code: number): number;
}

/** The package's two builds of the same code: with WebAssembly SIMD, and without it for engines that lack it. */
export type SpeexBuild = 'simd' | 'nonsimd';

const SPEEX_BUILD_MODULES: Record<SpeexBuild, string> = {
  simd: '@echogarden/speex-resampler-wasm/simd',
  nonsimd: '@echogarden/speex-resampler-wasm',
};

let speex: SpeexModule | undefined;
let loading: Promise<SpeexModule> | undefined;

/** Instantiates the shared WebAssembly module once per process. */
export async function loadResamplerLibrary(): Promise<void> {
  if (speex !== undefined) {
    return;
  }
  loading ??= instantiateSpeex();
  speex = await loading;
}

/** Loads the SIMD build, or the build without SIMD when this engine cannot compile SIMD. */
async function instantiateSpeex(): Promise<SpeexModule> {
  try {
    return await instantiateSpeexBuild('simd');
  } catch (error) {
    // NOTE: V8 compiles SIMD on arm64 and on x86-64 CPUs with SSE4.1, so this path is for older CPUs and is not run by the tests.
    if (!(error instanceof Error) || error.name !== 'CompileError') {
      throw error;
    }
    return instantiateSpeexBuild('nonsimd');
  }
}

/** Instantiates one build of the module. The tests compare the builds through it. */
export async function instantiateSpeexBuild(build: SpeexBuild): Promise<SpeexModule> {
  const exported = (await import(SPEEX_BUILD_MODULES[build])) as { default: () => Promise<SpeexModule> };
  return exported.default();
}

export interface ResamplerOptions {
  channels: number;
  inputSampleRateHz: number;
  outputSampleRateHz: number;
}

/**
 * Converts interleaved float PCM from one sample rate to another across
 * successive chunks without discontinuities at chunk boundaries. Equal rates
 * pass samples through untouched. Samples are converted to 16 bits for the
 * library (`round(x * 32768)`, clamped) and come back as `k / 32768`. The
 * filter holds back its last few input samples, 24 at quality 3 when
 * upsampling. `flush()` releases them at the end of the stream, so the
 * whole output is as long as the input times the rate ratio.
 */
export class Resampler {
  readonly channels: number;
  readonly inputSampleRateHz: number;
  readonly outputSampleRateHz: number;
  /** True when the rates are equal and `process` returns its input. */
  readonly passthrough: boolean;
  /**
   * Output frames the filter holds back: the output for an input frame comes
   * out only once this much more input has arrived. 0 when passing through.
   */
  readonly delayFrames: number = 0;

  private state = 0;
  /** Address of one block in the module's memory: the input and output frame counts, the input, then the output samples. */
  private memory = 0;
  private inputPointer = 0;
  private outputPointer = 0;
  private outputCapacityFrames = 0;
  /** The library's 16-bit output of the current call. */
  private output = new Int16Array(0);
  private floatOutput = new Float32Array(0);
  private inputFrames = 0;
  private outputFrames = 0;
  /** Output frames still to drop at the start, so that the output lines up with the input. */
  private leadingFramesToSkip = 0;
  private destroyed = false;

  private constructor(options: ResamplerOptions) {
    this.channels = options.channels;
    this.inputSampleRateHz = options.inputSampleRateHz;
    this.outputSampleRateHz = options.outputSampleRateHz;
    this.passthrough = options.inputSampleRateHz === options.outputSampleRateHz;
    if (this.passthrough) {
      return;
    }
    const library = requireLibrary();
    this.outputCapacityFrames =
      Math.ceil((MAX_FRAMES_PER_CALL * this.outputSampleRateHz) / this.inputSampleRateHz) + SPARE_OUTPUT_FRAMES;
    const inputBytes = MAX_FRAMES_PER_CALL * this.channels * 2;
    const outputBytes = this.outputCapacityFrames * this.channels * 2;
    this.memory = library._malloc(8 + inputBytes + outputBytes);
    if (this.memory === 0) {
      throw new Error(
        `the resampler library is out of memory: allocating ${8 + inputBytes + outputBytes} bytes failed; run fewer streams per process`,
      );
    }
    this.inputPointer = this.memory + 8;
    this.outputPointer = this.inputPointer + inputBytes;
    this.state = library._speex_resampler_init(
      this.channels,
      this.inputSampleRateHz,
      this.outputSampleRateHz,
      SPEEX_QUALITY,
      this.memory,
    );
    if (this.state === 0) {
      const code = library.HEAPU32[this.memory >> 2]!;
      library._free(this.memory);
      this.memory = 0;
      throw new AudioFormatError(
        `cannot resample ${this.channels} channels from ${this.inputSampleRateHz} to ${this.outputSampleRateHz} Hz: ${describeError(library, code)}`,
      );
    }
    this.delayFrames = Math.round(
      (speexInputLatencyFrames(this.inputSampleRateHz, this.outputSampleRateHz) * this.outputSampleRateHz) /
        this.inputSampleRateHz,
    );
    this.leadingFramesToSkip = this.delayFrames;
  }

  /**
   * Creates a resampler, loading the shared library on first use.
   *
   * @throws AudioFormatError when a rate or the channel count is outside the resampler's limits.
   */
  static async create(options: ResamplerOptions): Promise<Resampler> {
    validateOptions(options);
    if (options.inputSampleRateHz !== options.outputSampleRateHz) {
      await loadResamplerLibrary();
    }
    return new Resampler(options);
  }

  /**
   * Creates a resampler without waiting, for a format change in the middle
   * of a live stream. The library must have been loaded before, by
   * `create` or `loadResamplerLibrary`.
   *
   * @throws AudioFormatError when a rate or the channel count is outside the resampler's limits.
   */
  static createLoaded(options: ResamplerOptions): Resampler {
    validateOptions(options);
    return new Resampler(options);
  }

  /**
   * Resamples the next chunk of interleaved samples. Returns the input
   * itself when passing through; otherwise a view of an internal buffer
   * that the next call overwrites, so copy what must outlive it.
   */
  process(input: Float32Array): Float32Array {
    this.requireUsable();
    if (this.passthrough) {
      return input;
    }
    return this.toFloat(this.resampleToInt16(input));
  }

  /**
   * Resamples like `process`, and returns the library's 16-bit output
   * without the conversion to float, as a view of an internal buffer that
   * the next call overwrites. The samples equal `round(x * 32768)` of what
   * `process` returns.
   *
   * @throws Error when passing through, because there is no 16-bit output to give.
   */
  processToInt16(input: Float32Array): Int16Array {
    this.requireUsable();
    if (this.passthrough) {
      throw new Error('processToInt16() needs a resampler that changes the rate; use process() to pass through');
    }
    return this.resampleToInt16(input);
  }

  /**
   * Resamples G.711 codes like `processToInt16` resamples their decoded
   * samples, with the same result. `table` gives the 16-bit value of each
   * code, and the codes go into the library through it, without floats.
   *
   * @throws Error when passing through, because there is no 16-bit output to give.
   */
  processCodesToInt16(codes: Uint8Array, table: Int16Array): Int16Array {
    this.requireUsable();
    if (this.passthrough) {
      throw new Error('processCodesToInt16() needs a resampler that changes the rate; send the codes as they are when the rates match');
    }
    return this.resampleChunks(codes, table, codes.length);
  }

  /**
   * Returns the samples still inside the filter, so that the whole output is
   * as long as the whole input times the rate ratio (rounded to a frame).
   * Call once at the end of the stream; later `process` calls start a new
   * stretch of audio that is not aligned with the first.
   */
  flush(): Float32Array {
    this.requireUsable();
    if (this.passthrough) {
      return new Float32Array(0);
    }
    const expectedFrames = Math.round((this.inputFrames * this.outputSampleRateHz) / this.inputSampleRateHz);
    const missingFrames = expectedFrames - this.outputFrames;
    const silence = new Float32Array(DRAIN_FRAMES * this.channels);
    let written = 0;
    // The bound only guards against a loop without end, because the filter holds back far fewer frames.
    for (let calls = 0; written / this.channels < missingFrames && calls < 64; calls++) {
      written = this.convertInto(silence, 0, silence.length, written);
    }
    const tailFrames = Math.max(0, Math.min(missingFrames, written / this.channels));
    this.inputFrames = 0;
    this.outputFrames = 0;
    return this.toFloat(this.output.subarray(0, tailFrames * this.channels)).slice();
  }

  /** Frees the filter state. A second call does nothing, and a later call to `process` throws. */
  destroy(): void {
    if (this.destroyed) {
      return;
    }
    this.destroyed = true;
    if (this.state !== 0) {
      const library = requireLibrary();
      library._speex_resampler_destroy(this.state);
      library._free(this.memory);
      this.state = 0;
      this.memory = 0;
    }
  }

  private requireUsable(): void {
    if (this.destroyed) {
      throw new Error('resampler used after destroy(); create a new one');
    }
  }

  /**
   * Resamples `input[start, end)` (at most MAX_FRAMES_PER_CALL frames) and
   * appends the result at `offset` of the output buffer. Returns the new
   * length in samples.
   */
  private convertInto(input: Float32Array, start: number, end: number, offset: number): number {
    // The views are read after every call into the module, because growing its memory replaces them.
    const heap = requireLibrary().HEAP16;
    const inputIndex = this.inputPointer >> 1;
    for (let index = start; index < end; index++) {
      heap[inputIndex + index - start] = floatToInt16(input[index]!);
    }
    return this.filterInto(start, end, offset);
  }

  /** Like `convertInto`, for G.711 codes decoded through `table` straight into the library's input. */
  private convertCodesInto(codes: Uint8Array, table: Int16Array, start: number, end: number, offset: number): number {
    const heap = requireLibrary().HEAP16;
    const inputIndex = this.inputPointer >> 1;
    for (let index = start; index < end; index++) {
      heap[inputIndex + index - start] = table[codes[index]!]!;
    }
    return this.filterInto(start, end, offset);
  }

  /** Runs the filter over the `end - start` samples in the library's input and appends its output at `offset`. */
  private filterInto(start: number, end: number, offset: number): number {
    const library = requireLibrary();
    const channels = this.channels;
    let consumedFrames = 0;
    const totalFrames = (end - start) / channels;
    while (consumedFrames < totalFrames) {
      const counts = library.HEAPU32;
      counts[this.memory >> 2] = totalFrames - consumedFrames;
      counts[(this.memory >> 2) + 1] = this.outputCapacityFrames;
      const code = library._speex_resampler_process_interleaved_int(
        this.state,
        this.inputPointer + consumedFrames * channels * 2,
        this.memory,
        this.outputPointer,
        this.memory + 4,
      );
      if (code !== 0) {
        throw new Error(`the resampler failed: ${describeError(library, code)}`);
      }
      const usedFrames = library.HEAPU32[this.memory >> 2]!;
      const producedFrames = library.HEAPU32[(this.memory >> 2) + 1]!;
      if (usedFrames === 0 && producedFrames === 0) {
        throw new Error(`the resampler took none of ${totalFrames - consumedFrames} input frames`);
      }
      consumedFrames += usedFrames;
      // The first frames of a stream are the filter's ramp before the first input sample, so they are dropped.
      const skippedFrames = Math.min(this.leadingFramesToSkip, producedFrames);
      this.leadingFramesToSkip -= skippedFrames;
      const producedSamples = (producedFrames - skippedFrames) * channels;
      this.reserve(offset + producedSamples);
      const outputIndex = (this.outputPointer >> 1) + skippedFrames * channels;
      this.output.set(library.HEAP16.subarray(outputIndex, outputIndex + producedSamples), offset);
      offset += producedSamples;
    }
    return offset;
  }

  /** Resamples `input` into the 16-bit output buffer and returns a view of what it wrote. */
  private resampleToInt16(input: Float32Array): Int16Array {
    return this.resampleChunks(input, undefined, input.length);
  }

  /** Resamples floats, or G.711 codes with their decode table, in calls of at most MAX_FRAMES_PER_CALL frames. */
  private resampleChunks(input: Float32Array | Uint8Array, table: Int16Array | undefined, sampleCount: number): Int16Array {
    if (sampleCount % this.channels !== 0) {
      throw new RangeError(
        `resampler input of ${sampleCount} samples is not a whole number of ${this.channels}-channel frames`,
      );
    }
    const inputFrames = sampleCount / this.channels;
    this.inputFrames += inputFrames;
    let written = 0;
    for (let startFrame = 0; startFrame < inputFrames; startFrame += MAX_FRAMES_PER_CALL) {
      const endFrame = Math.min(inputFrames, startFrame + MAX_FRAMES_PER_CALL);
      const start = startFrame * this.channels;
      const end = endFrame * this.channels;
      written =
        table === undefined
          ? this.convertInto(input as Float32Array, start, end, written)
          : this.convertCodesInto(input as Uint8Array, table, start, end, written);
    }
    this.outputFrames += written / this.channels;
    return this.output.subarray(0, written);
  }

  /** Converts 16-bit samples to floats `k / 32768` in the float output buffer and returns a view of them. */
  private toFloat(samples: Int16Array): Float32Array {
    if (this.floatOutput.length < samples.length) {
      this.floatOutput = new Float32Array(Math.max(samples.length, this.floatOutput.length * 2));
    }
    const floats = this.floatOutput;
    for (let index = 0; index < samples.length; index++) {
      floats[index] = samples[index]! / 32768;
    }
    return floats.subarray(0, samples.length);
  }

  private reserve(samples: number): void {
    if (this.output.length >= samples) {
      return;
    }
    const grown = new Int16Array(Math.max(samples, this.output.length * 2));
    grown.set(this.output);
    this.output = grown;
  }
}

/**
 * Returns the input frames by which speexdsp's output lags its input:
 * half the filter length, as `speex_resampler_get_input_latency` gives it
 * (the WebAssembly build does not export that function). The length
 * follows `update_filter` in speexdsp's resample.c: the quality's base
 * length, stretched by the rate ratio when downsampling and rounded up to a
 * multiple of 8.
 */
function speexInputLatencyFrames(inputSampleRateHz: number, outputSampleRateHz: number): number {
  const divisor = greatestCommonDivisor(inputSampleRateHz, outputSampleRateHz);
  const numerator = inputSampleRateHz / divisor;
  const denominator = outputSampleRateHz / divisor;
  let filterLength = SPEEX_BASE_FILTER_LENGTH;
  if (numerator > denominator) {
    filterLength = Math.floor((filterLength * numerator) / denominator);
    filterLength = ((filterLength - 1) & ~0x7) + 8;
  }
  return filterLength / 2;
}

function greatestCommonDivisor(a: number, b: number): number {
  while (b !== 0) {
    [a, b] = [b, a % b];
  }
  return a;
}

function requireLibrary(): SpeexModule {
  if (speex === undefined) {
    throw new Error('the resampler library is not loaded; await Resampler.create() or loadResamplerLibrary() first');
  }
  return speex;
}

function describeError(library: SpeexModule, code: number): string {
  const pointer = library._speex_resampler_strerror(code);
  const bytes = library.HEAPU8;
  let end = pointer;
  while (end < bytes.length && bytes[end] !== 0) {
    end += 1;
  }
  return `${Buffer.from(bytes.subarray(pointer, end)).toString('latin1')} (speex error ${code})`;
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

/**
 * Cost of resampling one stream, the largest item in the agent's cost for
 * PCMU in and s16le 16 kHz out: CPU per second of audio, creation time and
 * resident memory per instance of the agent's Resampler (speexdsp in
 * WebAssembly, quality 3), fed 20 ms chunks as RTP delivers them
 * (`--chunk-ms` sets another length). It
 * measures two entries: `process()`, floats in and out, and
 * `processCodesToInt16()`, mu-law codes in and 16-bit samples out, the
 * agent's path for PCMU in and s16le out.
 *
 * For comparison it runs a half-band FIR interpolator by 2 (Kaiser window,
 * 4 * taps-per-side - 1 taps, of which one polyphase branch is a plain
 * copy), the textbook alternative for 8 kHz to 16 kHz, and checks that its
 * output is a clean sine. It is a measurement aid here, not a part of the
 * agent.
 *
 *   node --import tsx bench/resampler-cost.ts --instances 100 --seconds 5
 */
import { MULAW_DECODE_TABLE } from '../src/audio/g711.ts';
import { encodeSamples } from '../src/audio/pcm-converter.ts';
import { Resampler } from '../src/audio/resampler.ts';
import { emitEvent, numberOption, parseScriptOptions } from './lib/script-args.ts';

const options = parseScriptOptions('Usage: resampler-cost [--instances N] [--seconds S] [--chunk-ms MS] [--taps-per-side K]', {
  instances: { type: 'string', default: '100', description: 'Resamplers run side by side, one per stream' },
  seconds: { type: 'string', default: '5', description: 'Seconds of audio per instance' },
  'chunk-ms': { type: 'string', default: '20', description: 'Audio per call, in milliseconds: 20 is one RTP packet, 100 one frame' },
  'taps-per-side': { type: 'string', default: '16', description: 'Non-zero taps per side of the half-band filter' },
});
const instances = numberOption(options, 'instances', 1, 10000);
const seconds = numberOption(options, 'seconds', 0.1);
const tapsPerSide = numberOption(options, 'taps-per-side', 2, 64);
const chunkMs = numberOption(options, 'chunk-ms', 1, 1000);

const INPUT_RATE_HZ = 8000;
const CHUNK_FRAMES = Math.round((chunkMs * INPUT_RATE_HZ) / 1000);
const TEST_TONE_HZ = 1000;
const chunks = Math.round((seconds * INPUT_RATE_HZ) / CHUNK_FRAMES);
const input = new Float32Array(chunks * CHUNK_FRAMES);
for (let index = 0; index < input.length; index++) {
  input[index] = 0.5 * Math.sin((2 * Math.PI * TEST_TONE_HZ * index) / INPUT_RATE_HZ);
}

async function measureAgentResampler(): Promise<void> {
  const rssBeforeKiB = process.memoryUsage().rss / 1024;
  const createStartMs = performance.now();
  const resamplers: Resampler[] = [];
  for (let index = 0; index < instances; index++) {
    resamplers.push(await Resampler.create({ channels: 1, inputSampleRateHz: INPUT_RATE_HZ, outputSampleRateHz: 16000 }));
  }
  const createMs = performance.now() - createStartMs;
  const cpuMicros = timeCpu(() => {
    for (let chunk = 0; chunk < chunks; chunk++) {
      const piece = input.subarray(chunk * CHUNK_FRAMES, (chunk + 1) * CHUNK_FRAMES);
      for (const resampler of resamplers) {
        resampler.process(piece);
      }
    }
  });
  const rssAfterKiB = process.memoryUsage().rss / 1024;
  const codes = encodeSamples(input, 'mulaw');
  const codesCpuMicros = timeCpu(() => {
    for (let chunk = 0; chunk < chunks; chunk++) {
      const piece = codes.subarray(chunk * CHUNK_FRAMES, (chunk + 1) * CHUNK_FRAMES);
      for (const resampler of resamplers) {
        resampler.processCodesToInt16(piece, MULAW_DECODE_TABLE);
      }
    }
  });
  emitEvent('agent_resampler', {
    instances,
    createMsPerInstance: round(createMs / instances),
    cpuMicrosPerStreamSecond: Math.round(cpuMicros / instances / seconds),
    codesCpuMicrosPerStreamSecond: Math.round(codesCpuMicros / instances / seconds),
    rssKiBPerInstance: Math.round((rssAfterKiB - rssBeforeKiB) / instances),
  });
  for (const resampler of resamplers) {
    resampler.destroy();
  }
}

function measureHalfBand(): void {
  const upsamplers = Array.from({ length: instances }, () => new HalfBandUpsampler(tapsPerSide));
  const outputs = upsamplers.map(() => new Float32Array(2 * CHUNK_FRAMES));
  const checked = new Float32Array(2 * input.length);
  const cpuMicros = timeCpu(() => {
    for (let chunk = 0; chunk < chunks; chunk++) {
      const piece = input.subarray(chunk * CHUNK_FRAMES, (chunk + 1) * CHUNK_FRAMES);
      for (let index = 0; index < upsamplers.length; index++) {
        upsamplers[index]!.process(piece, outputs[index]!);
      }
      checked.set(outputs[0]!, chunk * 2 * CHUNK_FRAMES);
    }
  });
  emitEvent('half_band_fir', {
    instances,
    taps: 4 * tapsPerSide - 1,
    delayMs: round(((tapsPerSide + 1) / INPUT_RATE_HZ) * 1000),
    cpuMicrosPerStreamSecond: Math.round(cpuMicros / instances / seconds),
    // Error against the ideal 16 kHz sine, shifted by the filter delay, after the start-up transient.
    toneSnrDb: round(toneSnrDb(checked, 2 * tapsPerSide)),
  });
}

/**
 * Interpolator by 2 with a symmetric half-band lowpass: every even output
 * is an input sample, every odd output a weighted sum of `tapsPerSide`
 * pairs of inputs around it. The output lags the input by `tapsPerSide + 1`
 * input samples.
 */
class HalfBandUpsampler {
  private readonly coefficients: Float64Array;
  /** The last 2 * tapsPerSide inputs, followed by the current chunk. */
  private history: Float32Array;

  constructor(private readonly tapsPerSide: number) {
    this.coefficients = halfBandCoefficients(tapsPerSide);
    this.history = new Float32Array(2 * tapsPerSide + CHUNK_FRAMES);
  }

  /** Writes 2 * input.length samples into `output`. */
  process(input: Float32Array, output: Float32Array): void {
    const span = 2 * this.tapsPerSide;
    if (this.history.length !== span + input.length) {
      const grown = new Float32Array(span + input.length);
      grown.set(this.history.subarray(0, span));
      this.history = grown;
    }
    const history = this.history;
    history.set(input, span);
    const taps = this.coefficients;
    for (let index = 0; index < input.length; index++) {
      // Centre between history[index + K - 1] and history[index + K].
      const centre = index + this.tapsPerSide;
      output[2 * index] = history[centre - 1]!;
      let sum = 0;
      for (let tap = 0; tap < this.tapsPerSide; tap++) {
        sum += taps[tap]! * (history[centre - 1 - tap]! + history[centre + tap]!);
      }
      output[2 * index + 1] = sum;
    }
    history.copyWithin(0, input.length, input.length + span);
  }
}

/** Odd taps h(2j + 1) of a Kaiser-windowed sinc(m / 2), j = 0 .. K - 1, with gain 2 for interpolation. */
function halfBandCoefficients(tapsPerSide: number): Float64Array {
  const beta = 8;
  const halfLength = 2 * tapsPerSide;
  const coefficients = new Float64Array(tapsPerSide);
  for (let tap = 0; tap < tapsPerSide; tap++) {
    const m = 2 * tap + 1;
    const sinc = Math.sin((Math.PI * m) / 2) / ((Math.PI * m) / 2);
    const window = besselI0(beta * Math.sqrt(1 - (m / halfLength) ** 2)) / besselI0(beta);
    coefficients[tap] = sinc * window;
  }
  return coefficients;
}

/** Modified Bessel function of the first kind, order 0, by its power series. */
function besselI0(x: number): number {
  let sum = 1;
  let term = 1;
  for (let k = 1; k < 50; k++) {
    term *= (x / (2 * k)) ** 2;
    sum += term;
  }
  return sum;
}

/** Signal-to-error ratio of a 16 kHz output against the ideal sine, skipping `skip` start-up samples. */
function toneSnrDb(output: Float32Array, skip: number): number {
  // The output lags by tapsPerSide + 1 input samples, two output samples each.
  const delaySamples = 2 * tapsPerSide + 2;
  let signal = 0;
  let error = 0;
  for (let index = skip + delaySamples; index < output.length; index++) {
    const ideal = 0.5 * Math.sin((2 * Math.PI * TEST_TONE_HZ * (index - delaySamples)) / 16000);
    signal += ideal * ideal;
    error += (output[index]! - ideal) ** 2;
  }
  return 10 * Math.log10(signal / error);
}

function timeCpu(work: () => void): number {
  const before = process.cpuUsage();
  work();
  const used = process.cpuUsage(before);
  return used.user + used.system;
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

await measureAgentResampler();
measureHalfBand();

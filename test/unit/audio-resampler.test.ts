import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';

import { instantiateSpeexBuild, Resampler, type SpeexBuild } from '../../src/audio/resampler.ts';
import { AudioFormatError } from '../../src/errors.ts';

const execFileAsync = promisify(execFile);

/** Interleaved sine of `frequenciesHz[c]` on channel c, at `amplitude`. */
function sine(frequenciesHz: number[], sampleRateHz: number, frames: number, amplitude = 0.5): Float32Array {
  const channels = frequenciesHz.length;
  const samples = new Float32Array(frames * channels);
  for (let frame = 0; frame < frames; frame++) {
    for (let channel = 0; channel < channels; channel++) {
      samples[frame * channels + channel] = amplitude * Math.sin((2 * Math.PI * frequenciesHz[channel]! * frame) / sampleRateHz);
    }
  }
  return samples;
}

function channelOf(samples: Float32Array, channels: number, channel: number): Float32Array {
  return samples.filter((_, index) => index % channels === channel);
}

/** Frequency from the first and last upward zero crossings, interpolated between samples. */
function estimateFrequencyHz(samples: Float32Array, sampleRateHz: number): number {
  const crossings: number[] = [];
  for (let index = 1; index < samples.length; index++) {
    const before = samples[index - 1]!;
    const after = samples[index]!;
    if (before < 0 && after >= 0) {
      crossings.push(index - 1 + before / (before - after));
    }
  }
  assert.ok(crossings.length >= 2, 'signal has fewer than two zero crossings');
  return ((crossings.length - 1) * sampleRateHz) / (crossings.at(-1)! - crossings[0]!);
}

function concat(parts: Float32Array[]): Float32Array {
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  const joined = new Float32Array(total);
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

/** Resamples `input` in chunks of the given frame counts, cycling through them, then flushes. */
function resampleInChunks(resampler: Resampler, input: Float32Array, chunkFrames: number[]): Float32Array {
  const channels = resampler.channels;
  const parts: Float32Array[] = [];
  let frame = 0;
  for (let chunk = 0; frame * channels < input.length; chunk++) {
    const frames = chunkFrames[chunk % chunkFrames.length]!;
    const end = Math.min(input.length, (frame + frames) * channels);
    parts.push(resampler.process(input.subarray(frame * channels, end)).slice());
    frame += frames;
  }
  parts.push(resampler.flush());
  return concat(parts);
}

describe('Resampler', () => {
  test('48 kHz stereo to 16 kHz keeps frequency', async () => {
    const resampler = await Resampler.create({ channels: 2, inputSampleRateHz: 48000, outputSampleRateHz: 16000 });
    try {
      const input = sine([440, 1000], 48000, 48000);
      const output = resampleInChunks(resampler, input, [960]);
      assert.equal(output.length / 2, 16000, 'one second of input gives 16000 output frames');
      // Skip the filter's warm-up at the start before measuring.
      const left = channelOf(output, 2, 0).subarray(100);
      const right = channelOf(output, 2, 1).subarray(100);
      assert.ok(Math.abs(estimateFrequencyHz(left, 16000) - 440) < 0.5);
      assert.ok(Math.abs(estimateFrequencyHz(right, 16000) - 1000) < 0.5);
    } finally {
      resampler.destroy();
    }
  });

  test('odd chunks match one-shot output', async () => {
    const chunked = await Resampler.create({ channels: 2, inputSampleRateHz: 48000, outputSampleRateHz: 16000 });
    const oneShot = await Resampler.create({ channels: 2, inputSampleRateHz: 48000, outputSampleRateHz: 16000 });
    try {
      const input = sine([440, 1000], 48000, 48000);
      const pieces = resampleInChunks(chunked, input, [1, 7, 333, 960, 4801, 20000]);
      const whole = resampleInChunks(oneShot, input, [48000]);
      assert.equal(pieces.length, whole.length);
      assert.deepEqual(pieces, whole);
    } finally {
      chunked.destroy();
      oneShot.destroy();
    }
  });

  test('chunk boundaries leave no clicks', async () => {
    const resampler = await Resampler.create({ channels: 1, inputSampleRateHz: 44100, outputSampleRateHz: 16000 });
    try {
      const amplitude = 0.8;
      const output = resampleInChunks(resampler, sine([1000], 44100, 44100, amplitude), [441, 13, 1000]);
      // A sine's largest step between samples is 2 pi f A / rate; a click at a boundary would exceed it.
      const maxStep = (2 * Math.PI * 1000 * amplitude) / 16000;
      let largest = 0;
      // The last 50 samples hold the filter's drained tail, which is allowed to fall towards silence.
      for (let index = 1; index < output.length - 50; index++) {
        largest = Math.max(largest, Math.abs(output[index]! - output[index - 1]!));
      }
      assert.ok(largest <= maxStep * 1.05, `largest step ${largest} above ${maxStep}`);
    } finally {
      resampler.destroy();
    }
  });

  test('upsampling 8 kHz to 16 kHz', async () => {
    const resampler = await Resampler.create({ channels: 1, inputSampleRateHz: 8000, outputSampleRateHz: 16000 });
    try {
      const output = resampleInChunks(resampler, sine([300], 8000, 4000), [160]);
      assert.equal(output.length, 8000);
      assert.ok(Math.abs(estimateFrequencyHz(output.subarray(100), 16000) - 300) < 0.5);
    } finally {
      resampler.destroy();
    }
  });

  test('equal rates pass input through', async () => {
    const resampler = await Resampler.create({ channels: 2, inputSampleRateHz: 16000, outputSampleRateHz: 16000 });
    const input = sine([440, 880], 16000, 320);
    assert.equal(resampler.passthrough, true);
    assert.equal(resampler.process(input), input);
    assert.equal(resampler.flush().length, 0);
    resampler.destroy();
  });

  test('invalid rates raise AudioFormatError', async () => {
    await assert.rejects(
      Resampler.create({ channels: 1, inputSampleRateHz: 0, outputSampleRateHz: 16000 }),
      (error: unknown) => error instanceof AudioFormatError && /input rate of 0 Hz/.test(error.message),
    );
    await assert.rejects(
      Resampler.create({ channels: 1, inputSampleRateHz: 16000, outputSampleRateHz: 384000 }),
      AudioFormatError,
    );
    await assert.rejects(Resampler.create({ channels: 0, inputSampleRateHz: 8000, outputSampleRateHz: 16000 }), AudioFormatError);
  });

  test('use after destroy throws', async () => {
    const resampler = await Resampler.create({ channels: 1, inputSampleRateHz: 8000, outputSampleRateHz: 16000 });
    resampler.destroy();
    resampler.destroy();
    assert.throws(() => resampler.process(new Float32Array(160)), /after destroy/);
  });

  test('8 to 16 kHz error below -80 dB', async () => {
    const resampler = await Resampler.create({ channels: 1, inputSampleRateHz: 8000, outputSampleRateHz: 16000 });
    try {
      const output = resampleInChunks(resampler, sine([1000], 8000, 8000), [160]);
      assert.equal(output.length, 16000);
      // The output is aligned with the input: output sample n is input time n / 16000 s.
      let signal = 0;
      let error = 0;
      for (let index = 1000; index < 15000; index++) {
        const ideal = 0.5 * Math.sin((2 * Math.PI * 1000 * index) / 16000);
        signal += ideal * ideal;
        error += (output[index]! - ideal) ** 2;
      }
      const signalToErrorDb = 10 * Math.log10(signal / error);
      assert.ok(signalToErrorDb >= 80, `signal-to-error ${signalToErrorDb.toFixed(1)} dB, below 80 dB`);
    } finally {
      resampler.destroy();
    }
  });

  test('library load leaves no process handlers', async () => {
    // A fresh process, because the test runner adds handlers of its own and the library loads once per process.
    const script = [
      `import { Resampler } from ${JSON.stringify(new URL('../../src/audio/resampler.ts', import.meta.url).href)};`,
      "const before = process.listenerCount('uncaughtException') + process.listenerCount('unhandledRejection');",
      'const resampler = await Resampler.create({ channels: 1, inputSampleRateHz: 48000, outputSampleRateHz: 16000 });',
      'resampler.destroy();',
      "const after = process.listenerCount('uncaughtException') + process.listenerCount('unhandledRejection');",
      'console.log(JSON.stringify({ before, after }));',
    ].join('\n');
    const { stdout } = await execFileAsync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script]);
    const counts = JSON.parse(stdout) as { before: number; after: number };
    assert.equal(counts.after, counts.before, 'listeners added by the library were left on the process');
  });

  test('output lines up with input', async () => {
    // An impulse at input sample n must peak at output sample n * out / in, and the whole output keeps the length ratio.
    for (const [inputRateHz, outputRateHz] of [
      [8000, 16000],
      [48000, 16000],
      [44100, 16000],
      [16000, 8000],
    ] as const) {
      const resampler = await Resampler.create({ channels: 1, inputSampleRateHz: inputRateHz, outputSampleRateHz: outputRateHz });
      const input = new Float32Array(inputRateHz / 10);
      input[441] = 0.5;
      const output = resampleInChunks(resampler, input, [160]);
      resampler.destroy();
      let peak = 0;
      for (let index = 1; index < output.length; index++) {
        if (Math.abs(output[index]!) > Math.abs(output[peak]!)) {
          peak = index;
        }
      }
      const expected = (441 * outputRateHz) / inputRateHz;
      assert.ok(Math.abs(peak - expected) <= 1, `${inputRateHz} to ${outputRateHz} Hz: peak at ${peak}, expected ${expected}`);
      assert.equal(output.length, outputRateHz / 10, `${inputRateHz} to ${outputRateHz} Hz: length`);
    }
  });

  test('SIMD build matches the plain build', async () => {
    // Summation order may differ between the builds, so samples may differ by one unit and no more.
    const outputs: Record<SpeexBuild, Int16Array> = {
      simd: await resampleWithBuild('simd'),
      nonsimd: await resampleWithBuild('nonsimd'),
    };
    assert.equal(outputs.simd.length, 16000);
    assert.equal(outputs.nonsimd.length, 16000);
    let maxDifference = 0;
    for (let index = 0; index < outputs.simd.length; index++) {
      maxDifference = Math.max(maxDifference, Math.abs(outputs.simd[index]! - outputs.nonsimd[index]!));
    }
    assert.ok(maxDifference <= 1, `builds differ by up to ${maxDifference}`);
  });
});

/** Resamples one second of a 440 Hz and a 3 100 Hz tone from 8 to 16 kHz, in 20 ms calls, straight through one build of the module. */
async function resampleWithBuild(build: SpeexBuild): Promise<Int16Array> {
  const library = await instantiateSpeexBuild(build);
  const chunkFrames = 160;
  const capacityFrames = 400;
  const memory = library._malloc(8 + chunkFrames * 2 + capacityFrames * 2);
  const inputPointer = memory + 8;
  const outputPointer = inputPointer + chunkFrames * 2;
  const state = library._speex_resampler_init(1, 8000, 16000, 3, memory);
  assert.notEqual(state, 0, `${build} build did not create a resampler`);
  const output: number[] = [];
  for (let start = 0; start < 8000; start += chunkFrames) {
    const chunk = Int16Array.from({ length: chunkFrames }, (_, index) => {
      const time = (start + index) / 8000;
      return Math.round(12000 * Math.sin(2 * Math.PI * 440 * time) + 8000 * Math.sin(2 * Math.PI * 3100 * time));
    });
    library.HEAP16.set(chunk, inputPointer >> 1);
    library.HEAPU32[memory >> 2] = chunkFrames;
    library.HEAPU32[(memory >> 2) + 1] = capacityFrames;
    assert.equal(library._speex_resampler_process_interleaved_int(state, inputPointer, memory, outputPointer, memory + 4), 0);
    const produced = library.HEAPU32[(memory >> 2) + 1]!;
    output.push(...library.HEAP16.subarray(outputPointer >> 1, (outputPointer >> 1) + produced));
  }
  library._speex_resampler_destroy(state);
  library._free(memory);
  return Int16Array.from(output);
}

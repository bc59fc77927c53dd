import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test } from 'node:test';

import type { PcmBlock } from '../../src/audio/format.ts';
import { decodeMulaw, encodeAlaw } from '../../src/audio/g711.ts';
import { encodeSamples, PcmConverter } from '../../src/audio/pcm-converter.ts';
import { Resampler } from '../../src/audio/resampler.ts';
import type { OutputConfig } from '../../src/config/types.ts';
import { AudioFormatError } from '../../src/errors.ts';
import { FileSource } from '../../src/sources/file-source.ts';
import { JFK_WAV } from '../helpers/tools.ts';

function output(overrides: Partial<OutputConfig> = {}): OutputConfig {
  return { format: 's16le', sample_rate_hz: 16000, channels: 1, frame_ms: 100, ...overrides };
}

/** Blocks of interleaved sines, `frequenciesHz[c]` on channel c, cut into `blockFrames`. */
function sineBlocks(options: {
  frequenciesHz: number[];
  sampleRateHz: number;
  frames: number;
  blockFrames: number;
  amplitude?: number;
}): PcmBlock[] {
  const { frequenciesHz, sampleRateHz, frames, blockFrames } = options;
  const amplitude = options.amplitude ?? 0.5;
  const channels = frequenciesHz.length;
  const blocks: PcmBlock[] = [];
  for (let start = 0; start < frames; start += blockFrames) {
    const count = Math.min(blockFrames, frames - start);
    const samples = new Float32Array(count * channels);
    for (let frame = 0; frame < count; frame++) {
      for (let channel = 0; channel < channels; channel++) {
        const time = (start + frame) / sampleRateHz;
        samples[frame * channels + channel] = amplitude * Math.sin(2 * Math.PI * frequenciesHz[channel]! * time);
      }
    }
    blocks.push({ samples, sampleRateHz, channels, timestampMs: (start * 1000) / sampleRateHz });
  }
  return blocks;
}

/** Writes `blocks` through the converter and returns everything it outputs. */
async function convert(converter: PcmConverter, blocks: Iterable<PcmBlock> | Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const source = blocks instanceof Readable ? blocks : Readable.from(blocks, { objectMode: true });
  await pipeline(
    source,
    converter,
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk);
        callback();
      },
    }),
  );
  return Buffer.concat(chunks);
}

function int16Samples(bytes: Buffer): Int16Array {
  const copy = Buffer.from(bytes);
  return new Int16Array(copy.buffer, copy.byteOffset, copy.length / 2);
}

function channelOf(samples: Int16Array, channels: number, channel: number): Int16Array {
  return samples.filter((_, index) => index % channels === channel);
}

/** Frequency from the first and last upward zero crossings, interpolated between samples. */
function estimateFrequencyHz(samples: ArrayLike<number>, sampleRateHz: number): number {
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

describe('PcmConverter', () => {
  test('16 kHz s16le WAV comes out byte-identical', async () => {
    const wav = await readFile(JFK_WAV);
    const source = await FileSource.open({ type: 'file', path: JFK_WAV, realtime: false });
    const converter = await PcmConverter.create({
      output: output(),
      inputSampleRateHz: source.format.sampleRateHz,
      inputChannels: source.format.channels,
    });
    const converted = await convert(converter, source.readable);
    // The recording's data chunk is the last chunk of the file.
    const data = wav.subarray(wav.length - converted.length);
    assert.equal(converted.length, Math.round(source.durationMs * 16) * 2);
    assert.ok(converted.equals(data), 'converted bytes differ from the WAV data chunk');
  });

  test('every 16-bit value survives float', async () => {
    const values = Int16Array.from({ length: 65536 }, (_, index) => index - 32768);
    const samples = Float32Array.from(values, (value) => value / 32768);
    const converter = await PcmConverter.create({ output: output(), inputSampleRateHz: 16000, inputChannels: 1 });
    const converted = await convert(converter, [{ samples, sampleRateHz: 16000, channels: 1, timestampMs: 0 }]);
    assert.deepEqual(int16Samples(converted), values);
  });

  test('out-of-range floats are clamped', async () => {
    const samples = Float32Array.from([1, 1.5, -1, -2, Number.NaN, 0.5 / 32768, -0.5 / 32768]);
    const converter = await PcmConverter.create({ output: output(), inputSampleRateHz: 16000, inputChannels: 1 });
    const converted = await convert(converter, [{ samples, sampleRateHz: 16000, channels: 1, timestampMs: 0 }]);
    assert.deepEqual([...int16Samples(converted)], [32767, 32767, -32768, -32768, 0, 1, 0]);
  });

  test('G.711 bytes pass unchanged', async () => {
    // Every mu-law code, negative zero (0x7F) included, which encoding the decoded samples would turn into 0xFF.
    const codes = Buffer.from(Array.from({ length: 256 }, (_, code) => code));
    const decoded = new Int16Array(256);
    decodeMulaw(codes, decoded);
    const samples = Float32Array.from(decoded, (value) => value / 32768);
    const block: PcmBlock = { samples, sampleRateHz: 8000, channels: 1, timestampMs: 0, encoded: { encoding: 'mulaw', data: codes } };

    const mulaw = await PcmConverter.create({ output: output({ format: 'mulaw', sample_rate_hz: 8000 }), inputSampleRateHz: 8000, inputChannels: 1 });
    assert.ok((await convert(mulaw, [block])).equals(codes), 'mu-law out differs from the bytes in');

    // Another law or another rate encodes the samples.
    const alaw = await PcmConverter.create({ output: output({ format: 'alaw', sample_rate_hz: 8000 }), inputSampleRateHz: 8000, inputChannels: 1 });
    const expectedAlaw = Buffer.alloc(256);
    encodeAlaw(decoded, expectedAlaw);
    assert.ok((await convert(alaw, [block])).equals(expectedAlaw), 'A-law out is not the encoding of the samples');
    const resampled = await PcmConverter.create({ output: output({ format: 'mulaw', sample_rate_hz: 16000 }), inputSampleRateHz: 8000, inputChannels: 1 });
    assert.equal((await convert(resampled, [block])).length, 512);
  });

  test('G.711 codes resample like their samples', async () => {
    // A 440 Hz tone in mu-law, in 20 ms packets, once with its codes and once as samples alone.
    const samples = Float32Array.from({ length: 8000 }, (_, index) => 0.5 * Math.sin((2 * Math.PI * 440 * index) / 8000));
    const codes = Buffer.from(encodeSamples(samples, 'mulaw'));
    const decoded = new Int16Array(codes.length);
    decodeMulaw(codes, decoded);
    const withCodes: PcmBlock[] = [];
    const samplesOnly: PcmBlock[] = [];
    for (let start = 0; start < codes.length; start += 160) {
      const packetSamples = Float32Array.from(decoded.subarray(start, start + 160), (value) => value / 32768);
      const timestampMs = start / 8;
      withCodes.push({ samples: packetSamples, sampleRateHz: 8000, channels: 1, timestampMs, encoded: { encoding: 'mulaw', data: codes.subarray(start, start + 160) } });
      samplesOnly.push({ samples: packetSamples, sampleRateHz: 8000, channels: 1, timestampMs });
    }
    const fromCodes = await convert(await PcmConverter.create({ output: output(), inputSampleRateHz: 8000, inputChannels: 1 }), withCodes);
    const fromSamples = await convert(await PcmConverter.create({ output: output(), inputSampleRateHz: 8000, inputChannels: 1 }), samplesOnly);
    assert.equal(fromCodes.length, 32000);
    assert.ok(fromCodes.equals(fromSamples), 'output from the codes differs from the output from the samples');
  });

  test('48 kHz stereo becomes 16 kHz mono', async () => {
    const converter = await PcmConverter.create({ output: output(), inputSampleRateHz: 48000, inputChannels: 2 });
    const blocks = sineBlocks({ frequenciesHz: [440, 440], sampleRateHz: 48000, frames: 96000, blockFrames: 960 });
    const samples = int16Samples(await convert(converter, blocks));
    // Two seconds at 16 kHz, exactly, because the flush drains the filter's delay.
    assert.equal(samples.length, 32000);
    assert.ok(Math.abs(estimateFrequencyHz(samples.subarray(100), 16000) - 440) < 0.5);
    const peak = samples.reduce((max, value) => Math.max(max, Math.abs(value)), 0);
    assert.ok(Math.abs(peak - 0.5 * 32768) < 200, `peak ${peak}`);
  });

  test('channel selection picks channel', async () => {
    const frequenciesHz = [300, 500, 700, 900];
    const blocks = sineBlocks({ frequenciesHz, sampleRateHz: 16000, frames: 16000, blockFrames: 320 });
    for (const channel of [0, 2, 3]) {
      const converter = await PcmConverter.create({
        output: output(),
        inputSampleRateHz: 16000,
        inputChannels: 4,
        channelSelection: [channel],
      });
      const samples = int16Samples(await convert(converter, blocks));
      assert.equal(samples.length, 16000);
      const frequencyHz = estimateFrequencyHz(samples, 16000);
      assert.ok(Math.abs(frequencyHz - frequenciesHz[channel]!) < 0.5, `channel ${channel}: ${frequencyHz} Hz`);
    }
  });

  test('two selected channels map to stereo', async () => {
    const blocks = sineBlocks({ frequenciesHz: [300, 500, 700, 900], sampleRateHz: 16000, frames: 8000, blockFrames: 320 });
    const converter = await PcmConverter.create({
      output: output({ channels: 2 }),
      inputSampleRateHz: 16000,
      inputChannels: 4,
      channelSelection: [3, 1],
    });
    const samples = int16Samples(await convert(converter, blocks));
    assert.ok(Math.abs(estimateFrequencyHz(channelOf(samples, 2, 0), 16000) - 900) < 0.5);
    assert.ok(Math.abs(estimateFrequencyHz(channelOf(samples, 2, 1), 16000) - 500) < 0.5);
  });

  test('mono is copied to both channels', async () => {
    const blocks = sineBlocks({ frequenciesHz: [440], sampleRateHz: 16000, frames: 3200, blockFrames: 320 });
    const converter = await PcmConverter.create({ output: output({ channels: 2 }), inputSampleRateHz: 16000, inputChannels: 1 });
    const samples = int16Samples(await convert(converter, blocks));
    assert.equal(samples.length, 6400);
    assert.deepEqual(channelOf(samples, 2, 0), channelOf(samples, 2, 1));
  });

  test('selecting a missing channel fails', async () => {
    await assert.rejects(
      PcmConverter.create({ output: output(), inputSampleRateHz: 16000, inputChannels: 2, channelSelection: [2] }),
      (error: unknown) =>
        error instanceof AudioFormatError && error.message.includes('selected channel 3 (0-based index 2) does not exist in 2-channel input'),
    );
  });

  test('mulaw and alaw outputs', async () => {
    const blocks = sineBlocks({ frequenciesHz: [440], sampleRateHz: 8000, frames: 1600, blockFrames: 160 });
    const int16 = Int16Array.from(
      blocks.flatMap((block) => [...block.samples]),
      (value) => Math.max(-32768, Math.min(32767, Math.round(value * 32768))),
    );

    const alawConverter = await PcmConverter.create({
      output: output({ format: 'alaw', sample_rate_hz: 8000 }),
      inputSampleRateHz: 8000,
      inputChannels: 1,
    });
    const alaw = await convert(alawConverter, blocks);
    const expectedAlaw = new Uint8Array(int16.length);
    encodeAlaw(int16, expectedAlaw);
    assert.deepEqual(new Uint8Array(alaw), expectedAlaw);

    const mulawConverter = await PcmConverter.create({
      output: output({ format: 'mulaw', sample_rate_hz: 8000 }),
      inputSampleRateHz: 8000,
      inputChannels: 1,
    });
    const mulaw = await convert(mulawConverter, blocks);
    assert.equal(mulaw.length, 1600);
    const decoded = new Int16Array(mulaw.length);
    decodeMulaw(mulaw, decoded);
    assert.ok(Math.abs(estimateFrequencyHz(decoded, 8000) - 440) < 0.5);
  });

  test('format change rebuilds the conversion', async () => {
    const converter = await PcmConverter.create({ output: output(), inputSampleRateHz: 16000, inputChannels: 1 });
    const first = sineBlocks({ frequenciesHz: [440], sampleRateHz: 16000, frames: 8000, blockFrames: 320 });
    const second = sineBlocks({ frequenciesHz: [440, 440], sampleRateHz: 48000, frames: 24000, blockFrames: 960 });
    const samples = int16Samples(await convert(converter, [...first, ...second]));
    assert.equal(converter.formatChanges, 1);
    // Half a second at 16 kHz, then half a second of 48 kHz audio resampled to 16 kHz.
    assert.equal(samples.length, 16000);
    assert.ok(Math.abs(estimateFrequencyHz(samples.subarray(8100), 16000) - 440) < 0.5);
  });

  test('resampled output matches float encoding', async () => {
    // The converter encodes the resampler's 16-bit output directly; the float path must give the same bytes.
    const blocks = sineBlocks({ frequenciesHz: [440], sampleRateHz: 8000, frames: 8000, blockFrames: 160, amplitude: 0.9 });
    for (const format of ['s16le', 'mulaw', 'alaw'] as const) {
      const converter = await PcmConverter.create({ output: output({ format }), inputSampleRateHz: 8000, inputChannels: 1 });
      const converted = await convert(converter, blocks);
      const resampler = await Resampler.create({ channels: 1, inputSampleRateHz: 8000, outputSampleRateHz: 16000 });
      const expected = Buffer.concat([
        ...blocks.map((block) => encodeSamples(resampler.process(block.samples), format)),
        encodeSamples(resampler.flush(), format),
      ]);
      resampler.destroy();
      assert.equal(converted.length, expected.length, `${format}: length`);
      assert.ok(converted.equals(expected), `${format}: bytes differ`);
    }
  });
});


import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, test } from 'node:test';

import type { PcmBlock } from '../../src/audio/format.ts';
import { systemClock } from '../../src/clock.ts';
import type { ToneSourceConfig } from '../../src/config/types.ts';
import { ToneSource } from '../../src/sources/tone-source.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { withTimeout } from '../helpers/tools.ts';

function toneConfig(overrides: Partial<ToneSourceConfig> = {}): ToneSourceConfig {
  return {
    type: 'tone',
    frequency_hz: 440,
    level_dbfs: -20,
    sample_rate_hz: 16000,
    channels: 1,
    speech_like: false,
    ...overrides,
  };
}

/** Takes every block buffered in the Readable. */
function drain(source: ToneSource): PcmBlock[] {
  const blocks: PcmBlock[] = [];
  for (let block = source.readable.read() as PcmBlock | null; block !== null; block = source.readable.read() as PcmBlock | null) {
    blocks.push(block);
  }
  return blocks;
}

function channelOf(blocks: PcmBlock[], channels: number, channel: number): Float32Array {
  return Float32Array.from(blocks.flatMap((block) => [...block.samples].filter((_, index) => index % channels === channel)));
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

describe('ToneSource', () => {
  test('tone has frequency and level', async () => {
    const clock = new ManualClock();
    const source = new ToneSource(toneConfig({ duration_ms: 1000 }), { clock });
    assert.equal(source.kind, 'tone');
    assert.equal(source.live, true);
    source.readable.read(0);
    clock.advance(1000);
    const blocks = drain(source);
    assert.equal(blocks.length, 50);
    const samples = channelOf(blocks, 1, 0);
    assert.equal(samples.length, 16000);
    assert.ok(Math.abs(estimateFrequencyHz(samples, 16000) - 440) < 0.1);
    const peak = samples.reduce((max, value) => Math.max(max, Math.abs(value)), 0);
    assert.ok(Math.abs(peak - 0.1) < 0.001, `peak ${peak} for -20 dBFS`);
    // The Readable ends after the last block because the duration is over.
    await withTimeout(once(source.readable, 'end'), 1000, 'the tone to end');
  });

  test('blocks follow the clock', () => {
    const clock = new ManualClock();
    const source = new ToneSource(toneConfig(), { clock });
    source.readable.read(0);
    clock.advance(19);
    assert.equal(drain(source).length, 0, 'a 20 ms block is not due after 19 ms');
    clock.advance(1);
    const first = drain(source);
    assert.equal(first.length, 1);
    assert.equal(first[0]!.timestampMs, 0);
    clock.advance(1000);
    const next = drain(source);
    assert.equal(next.length, 50);
    assert.deepEqual(
      next.map((block) => block.timestampMs),
      Array.from({ length: 50 }, (_, index) => 20 + index * 20),
    );
    source.stop();
  });

  test('live source ignores backpressure', () => {
    const clock = new ManualClock();
    const source = new ToneSource(toneConfig(), { clock });
    source.readable.read(0);
    clock.advance(2000);
    // Far above the high-water mark: a live source does not wait for its reader.
    assert.equal(source.readable.readableLength, 100);
    source.stop();
  });

  test('channels get distinct frequencies', () => {
    const clock = new ManualClock();
    const source = new ToneSource(toneConfig({ channels: 3, duration_ms: 500 }), { clock });
    source.readable.read(0);
    clock.advance(500);
    const blocks = drain(source);
    assert.deepEqual(
      source.channelFrequenciesHz.map((frequencyHz) => Math.round(frequencyHz * 1000) / 1000),
      [440, 462, 484],
    );
    for (const [channel, frequencyHz] of source.channelFrequenciesHz.entries()) {
      assert.ok(Math.abs(estimateFrequencyHz(channelOf(blocks, 3, channel), 16000) - frequencyHz) < 0.1);
    }
  });

  test('speech-like tone has bursts and pauses', () => {
    const clock = new ManualClock();
    const source = new ToneSource(toneConfig({ speech_like: true, duration_ms: 5000 }), { clock });
    source.readable.read(0);
    clock.advance(5000);
    const samples = channelOf(drain(source), 1, 0);
    // Peak of each 10 ms window, then runs of loud and silent windows.
    const windowFrames = 160;
    const loud: boolean[] = [];
    for (let start = 0; start + windowFrames <= samples.length; start += windowFrames) {
      let peak = 0;
      for (let index = start; index < start + windowFrames; index++) {
        peak = Math.max(peak, Math.abs(samples[index]!));
      }
      loud.push(peak > 0.01);
    }
    const runs: Array<{ loud: boolean; windows: number }> = [];
    for (const value of loud) {
      const last = runs.at(-1);
      if (last !== undefined && last.loud === value) {
        last.windows += 1;
      } else {
        runs.push({ loud: value, windows: 1 });
      }
    }
    const bursts = runs.slice(0, -1).filter((run) => run.loud);
    const pauses = runs.slice(1, -1).filter((run) => !run.loud);
    // 5 s of bursts of 200 to 400 ms and pauses of 150 to 300 ms; 10 ms windows blur each edge by one window.
    assert.ok(bursts.length >= 8, `${bursts.length} bursts in 5 s`);
    assert.ok(bursts.length <= 15, `${bursts.length} bursts in 5 s`);
    for (const burst of bursts) {
      assert.ok(burst.windows >= 19, `burst of ${burst.windows * 10} ms`);
      assert.ok(burst.windows <= 41, `burst of ${burst.windows * 10} ms`);
    }
    for (const pause of pauses) {
      assert.ok(pause.windows >= 13, `pause of ${pause.windows * 10} ms`);
      assert.ok(pause.windows <= 31, `pause of ${pause.windows * 10} ms`);
    }

    // The same config gives the same audio.
    const again = new ToneSource(toneConfig({ speech_like: true, duration_ms: 5000 }), { clock });
    again.readable.read(0);
    clock.advance(5000);
    assert.deepEqual(channelOf(drain(again), 1, 0), samples);
  });

  test('real clock paces blocks', async () => {
    const source = new ToneSource(toneConfig({ duration_ms: 200 }), { clock: systemClock });
    const startMs = systemClock.nowMs();
    let audioMs = 0;
    source.readable.on('data', (block: PcmBlock) => {
      audioMs += (block.samples.length / 16000) * 1000;
      assert.ok(systemClock.nowMs() - startMs >= audioMs - 0.5, `${audioMs} ms of audio too early`);
    });
    await withTimeout(once(source.readable, 'end'), 5000, 'the tone to end');
    assert.equal(audioMs, 200);
  });
});

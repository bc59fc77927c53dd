import assert from 'node:assert/strict';
import { once } from 'node:events';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import type { PcmBlock } from '../../src/audio/format.ts';
import { systemClock } from '../../src/clock.ts';
import { AudioFormatError } from '../../src/errors.ts';
import { FileSource } from '../../src/sources/file-source.ts';
import { JFK_WAV, decodeToS16le, ffmpeg, makeTempDir, withTimeout } from '../helpers/tools.ts';

function int16Samples(bytes: Buffer): Int16Array {
  const copy = Buffer.from(bytes);
  return new Int16Array(copy.buffer, copy.byteOffset, copy.length / 2);
}

function blockDurationMs(block: PcmBlock): number {
  return (block.samples.length / block.channels / block.sampleRateHz) * 1000;
}

/** Resolves on the Readable's next 'readable' event, or when it ends. */
function nextReadable(source: FileSource): Promise<void> {
  return withTimeout(
    new Promise<void>((resolve) => {
      const done = (): void => {
        source.readable.off('readable', done);
        source.readable.off('end', done);
        resolve();
      };
      source.readable.on('readable', done);
      source.readable.on('end', done);
    }),
    5000,
    'the file source to have a block',
  );
}

describe('FileSource', () => {
  let dir = '';
  let shortStereo = '';

  before(async () => {
    dir = await makeTempDir('file-source-test-');
    shortStereo = join(dir, 'short-stereo.wav');
    await ffmpeg(['-y', '-i', JFK_WAV, '-t', '0.5', '-ar', '48000', '-ac', '2', '-c:a', 'pcm_s16le', shortStereo]);
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('emits the whole file with offsets', async () => {
    const source = await FileSource.open({ type: 'file', path: JFK_WAV, realtime: false });
    assert.equal(source.kind, 'file');
    assert.equal(source.live, false);
    assert.deepEqual(source.format, { sampleRateHz: 16000, channels: 1 });
    assert.equal(source.durationMs, 11000);

    const blocks: PcmBlock[] = [];
    for await (const block of source.readable) {
      blocks.push(block as PcmBlock);
    }
    let expectedTimestampMs = 0;
    for (const block of blocks) {
      assert.equal(block.timestampMs, expectedTimestampMs);
      assert.equal(block.sampleRateHz, 16000);
      expectedTimestampMs += blockDurationMs(block);
    }
    assert.equal(expectedTimestampMs, 11000);
    const samples = Int16Array.from(
      blocks.flatMap((block) => [...block.samples]),
      (value) => Math.round(value * 32768),
    );
    assert.deepEqual(samples, int16Samples(await decodeToS16le(JFK_WAV)));
  });

  test('stops producing when not read', async () => {
    const source = await FileSource.open({ type: 'file', path: JFK_WAV, realtime: false }, { blockMs: 100 });
    // 11 s in 100 ms blocks is 110 blocks; without backpressure all would be read at once.
    source.readable.read(0);
    await nextReadable(source);
    const buffered = source.readable.readableLength;
    assert.ok(buffered >= 1, `${buffered} blocks buffered`);
    assert.ok(buffered <= source.readable.readableHighWaterMark, `${buffered} blocks buffered`);

    // An observation window, not a synchronisation: nothing may be produced while no one reads.
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(source.blocksEmitted, source.readable.readableLength);
    assert.ok(source.blocksEmitted <= source.readable.readableHighWaterMark);

    // Reading resumes production.
    const before = source.blocksEmitted;
    while (source.readable.read() !== null) {
      // Drain what is buffered.
    }
    await nextReadable(source);
    assert.ok(source.blocksEmitted > before);
    source.readable.destroy();
  });

  test('realtime is never ahead of the clock', async () => {
    const source = await FileSource.open(
      { type: 'file', path: shortStereo, realtime: true },
      { clock: systemClock },
    );
    assert.deepEqual(source.format, { sampleRateHz: 48000, channels: 2 });
    const startMs = systemClock.nowMs();
    let audioMs = 0;
    let blocks = 0;
    for await (const chunk of source.readable) {
      const block = chunk as PcmBlock;
      assert.equal(block.timestampMs, audioMs);
      audioMs += blockDurationMs(block);
      blocks += 1;
      const elapsedMs = systemClock.nowMs() - startMs;
      // Each block arrives once its last sample is due, so elapsed time is never below the audio so far.
      assert.ok(elapsedMs >= audioMs - 0.5, `block ${blocks}: ${audioMs} ms of audio after ${elapsedMs} ms`);
    }
    assert.equal(audioMs, 500);
    assert.equal(blocks, 25, '20 ms blocks');
  });

  test('stop ends the stream early', async () => {
    const source = await FileSource.open({ type: 'file', path: shortStereo, realtime: true });
    const blocks: PcmBlock[] = [];
    source.readable.on('data', (block: PcmBlock) => {
      blocks.push(block);
      if (blocks.length === 3) {
        source.stop();
      }
    });
    await withTimeout(once(source.readable, 'end'), 5000, 'the stopped file source to end');
    assert.equal(blocks.length, 3);
    source.stop();
  });

  test('unsupported file fails to open', async () => {
    const path = join(dir, 'adpcm.wav');
    await ffmpeg(['-y', '-i', JFK_WAV, '-t', '1', '-c:a', 'adpcm_ima_wav', path]);
    await assert.rejects(
      FileSource.open({ type: 'file', path, realtime: false }),
      (error: unknown) => error instanceof AudioFormatError && /0x0011 \(IMA ADPCM\)/.test(error.message),
    );
  });
});

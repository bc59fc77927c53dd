import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import type { AudioFrame, PcmBlock } from '../../src/audio/format.ts';
import { FrameCutter } from '../../src/audio/framer.ts';
import { runLivePath } from '../../src/audio/live-path.ts';
import { LiveReadable } from '../../src/audio/live-readable.ts';
import { PcmConversion } from '../../src/audio/pcm-converter.ts';
import type { OutputConfig } from '../../src/config/types.ts';

/** 8 kHz mono s16le out, one 20 ms frame per 20 ms block: no resampling, so a frame's samples are its block's. */
const output: OutputConfig = { format: 's16le', sample_rate_hz: 8000, channels: 1, frame_ms: 20 };

/** Block `index` of 160 samples, every sample (index + 1) / 1000, which is (index + 1) × 32.768 in 16 bits. */
function numberedBlock(index: number): PcmBlock {
  return { samples: new Float32Array(160).fill((index + 1) / 1000), sampleRateHz: 8000, channels: 1, timestampMs: index * 20 };
}

/** Inverts numberedBlock() from a frame's first sample. */
function blockIndexOf(frame: AudioFrame): number {
  return Math.round((frame.data.readInt16LE(0) * 1000) / 32768) - 1;
}

async function startPath(readable: LiveReadable): Promise<{ frames: number[]; done: Promise<void> }> {
  const conversion = await PcmConversion.create({ output, inputSampleRateHz: 8000, inputChannels: 1 });
  const cutter = new FrameCutter({ format: { encoding: 's16le', sampleRateHz: 8000, channels: 1 }, frameMs: output.frame_ms });
  const frames: number[] = [];
  const done = runLivePath({ readable, conversion, cutter, onFrame: (frame) => frames.push(blockIndexOf(frame)) });
  return { frames, done };
}

describe('runLivePath with a LiveReadable', () => {
  test('keeps order across queued and direct blocks', async () => {
    const readable = new LiveReadable();
    // Blocks from before the path starts wait in the Readable.
    for (let index = 0; index < 3; index++) {
      readable.deliver(numberedBlock(index));
    }
    const { frames, done } = await startPath(readable);
    // The Readable still holds blocks 0 to 2, so these queue behind them.
    readable.deliver(numberedBlock(3));
    readable.deliver(numberedBlock(4));
    await new Promise((resolve) => setImmediate(resolve));
    readable.deliver(numberedBlock(5));
    readable.push(null);
    await done;

    assert.deepEqual(frames, [0, 1, 2, 3, 4, 5]);
  });

  test('bypasses the Readable once flowing', async () => {
    const readable = new LiveReadable();
    const { frames, done } = await startPath(readable);
    await new Promise((resolve) => setImmediate(resolve));
    let pushes = 0;
    const push = readable.push.bind(readable);
    readable.push = (chunk: unknown): boolean => {
      pushes += 1;
      return push(chunk);
    };

    readable.deliver(numberedBlock(0));
    assert.deepEqual(frames, [0], 'the frame of a block delivered to a flowing, empty Readable');
    readable.deliver(numberedBlock(1));
    assert.deepEqual(frames, [0, 1]);
    assert.equal(pushes, 0, 'blocks pushed through the Readable');

    readable.push(null);
    await done;
    assert.deepEqual(frames, [0, 1]);
  });

  test('rejects a block after the end', async () => {
    const readable = new LiveReadable();
    const { frames, done } = await startPath(readable);
    await new Promise((resolve) => setImmediate(resolve));
    readable.deliver(numberedBlock(0));
    const errors: Error[] = [];
    readable.on('error', (error) => errors.push(error));

    readable.push(null);
    readable.deliver(numberedBlock(1));
    await done.catch(() => undefined);

    assert.deepEqual(frames, [0]);
    assert.equal((errors[0] as NodeJS.ErrnoException | undefined)?.code, 'ERR_STREAM_PUSH_AFTER_EOF');
  });

  test('stops delivering after a block fails', async () => {
    const readable = new LiveReadable();
    const { frames, done } = await startPath(readable);
    await new Promise((resolve) => setImmediate(resolve));

    readable.deliver(numberedBlock(0));
    // 3 samples are not a whole number of 2-channel frames, so the conversion throws.
    readable.deliver({ samples: new Float32Array(3), sampleRateHz: 8000, channels: 2, timestampMs: 20 });
    readable.deliver(numberedBlock(2));

    await assert.rejects(done, /not a whole number of 2-channel frames/);
    assert.deepEqual(frames, [0]);
  });
});

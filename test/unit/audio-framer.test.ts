import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test } from 'node:test';

import type { AudioFormat, AudioFrame } from '../../src/audio/format.ts';
import { FrameCutter, Framer } from '../../src/audio/framer.ts';
import { AudioFormatError } from '../../src/errors.ts';

/** Bytes 0, 1, 2, ... modulo 251, so any reordering or loss shows. */
function numberedBytes(length: number): Buffer {
  return Buffer.from(Array.from({ length }, (_, index) => index % 251));
}

/** Cuts `data` into chunks of the given sizes, cycling through them. */
function cut(data: Buffer, sizes: number[]): Buffer[] {
  const chunks: Buffer[] = [];
  let offset = 0;
  for (let index = 0; offset < data.length; index++) {
    const size = sizes[index % sizes.length]!;
    chunks.push(data.subarray(offset, offset + size));
    offset += size;
  }
  return chunks;
}

async function frame(framer: Framer, chunks: Buffer[]): Promise<AudioFrame[]> {
  const frames: AudioFrame[] = [];
  await pipeline(
    Readable.from(chunks),
    framer,
    new Writable({
      objectMode: true,
      write(audioFrame: AudioFrame, _encoding, callback) {
        frames.push(audioFrame);
        callback();
      },
    }),
  );
  return frames;
}

describe('Framer', () => {
  const stereo16k: AudioFormat = { encoding: 's16le', sampleRateHz: 16000, channels: 2 };

  test('odd chunks give exact frames', async () => {
    // 1 s and 10 ms of stereo s16le, plus 2 bytes that make half a sample frame.
    const data = numberedBytes(16000 * 4 + 160 * 4 + 2);
    const framer = new Framer({ format: stereo16k, frameMs: 20 });
    const frames = await frame(framer, cut(data, [1, 3, 7, 333, 1280, 5000]));

    assert.equal(framer.frameBytes, 1280);
    assert.equal(frames.length, 51);
    for (const [index, audioFrame] of frames.slice(0, 50).entries()) {
      assert.equal(audioFrame.data.length, 1280, `frame ${index}`);
      assert.equal(audioFrame.timestampMs, index * 20, `frame ${index}`);
      assert.equal(audioFrame.durationMs, 20, `frame ${index}`);
    }
    const last = frames[50]!;
    assert.equal(last.data.length, 640);
    assert.equal(last.timestampMs, 1000);
    assert.equal(last.durationMs, 10);
    assert.equal(framer.droppedBytes, 2);
    assert.ok(Buffer.concat(frames.map((audioFrame) => audioFrame.data)).equals(data.subarray(0, data.length - 2)));
  });

  test('timestamps follow sample count', async () => {
    // 30 ms at 8 kHz is 240 samples; 44.1 kHz makes 10 ms frames of 441 samples, 10 ms each.
    const mulaw = new Framer({ format: { encoding: 'mulaw', sampleRateHz: 8000, channels: 1 }, frameMs: 30 });
    const mulawFrames = await frame(mulaw, [numberedBytes(1000)]);
    assert.deepEqual(
      mulawFrames.map((audioFrame) => [audioFrame.data.length, audioFrame.timestampMs, audioFrame.durationMs]),
      [
        [240, 0, 30],
        [240, 30, 30],
        [240, 60, 30],
        [240, 90, 30],
        [40, 120, 5],
      ],
    );

    const odd = new Framer({ format: { encoding: 's16le', sampleRateHz: 22050, channels: 1 }, frameMs: 10 });
    // 220.5 samples in 10 ms round down to 220 per frame, so timestamps advance by 220 / 22.05 ms.
    const oddFrames = await frame(odd, [numberedBytes(220 * 2 * 100)]);
    assert.equal(oddFrames.length, 100);
    assert.equal(oddFrames[99]!.timestampMs, (99 * 220 * 1000) / 22050);
  });

  test('empty input gives no frames', async () => {
    const framer = new Framer({ format: stereo16k, frameMs: 100 });
    assert.deepEqual(await frame(framer, []), []);
  });

  test('frame without a sample fails', () => {
    assert.throws(
      () => new Framer({ format: { encoding: 's16le', sampleRateHz: 8000, channels: 1 }, frameMs: 0.1 }),
      (error: unknown) => error instanceof AudioFormatError && /use a longer frame_ms/.test(error.message),
    );
  });

  test('shortened first frame keeps later boundaries', () => {
    const format: AudioFormat = { encoding: 's16le', sampleRateHz: 16000, channels: 1 };
    // A resampler holding back 48 sample frames: frames then end 48 frames before each 100 ms boundary.
    const cutter = new FrameCutter({ format, frameMs: 100, firstFrameShortBy: 48 });
    const data = numberedBytes(3 * 3200);
    const frames: AudioFrame[] = [];
    for (const chunk of cut(data, [640])) {
      cutter.write(chunk, (audioFrame) => frames.push(audioFrame));
    }
    cutter.finish((audioFrame) => frames.push(audioFrame));
    assert.deepEqual(
      frames.map((audioFrame) => audioFrame.data.length),
      [3200 - 96, 3200, 3200, 96],
    );
    assert.deepEqual(
      frames.map((audioFrame) => audioFrame.timestampMs),
      [0, 97, 197, 297],
    );
    assert.ok(Buffer.concat(frames.map((audioFrame) => audioFrame.data)).equals(data), 'bytes differ from the input');
  });

  test('alternating buffers keep each frame intact', () => {
    const format: AudioFormat = { encoding: 's16le', sampleRateHz: 16000, channels: 1 };
    const cutter = new FrameCutter({ format, frameMs: 100, firstFrameShortBy: 48, alternateBuffers: true });
    const data = numberedBytes(5 * 3200);
    const copies: Buffer[] = [];
    const frames: AudioFrame[] = [];
    const onFrame = (audioFrame: AudioFrame): void => {
      // The frame before this one must still hold its bytes.
      if (frames.length > 0) {
        assert.ok(frames.at(-1)!.data.equals(copies.at(-1)!), `frame ${frames.length - 1} changed before the next was cut`);
      }
      frames.push(audioFrame);
      copies.push(Buffer.from(audioFrame.data));
    };
    for (const chunk of cut(data, [640, 1000, 3333])) {
      cutter.write(chunk, onFrame);
    }
    cutter.finish(onFrame);

    assert.ok(Buffer.concat(copies).equals(data), 'bytes differ from the input');
    const arrayBuffers = new Set(frames.map((audioFrame) => audioFrame.data.buffer));
    assert.equal(arrayBuffers.size, 2);
  });
});

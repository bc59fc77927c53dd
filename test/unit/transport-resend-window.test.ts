import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ResendWindow } from '../../src/transport/resend-window.ts';

/** Bytes 0, 1, 2, ... from `start`, so each byte shows its offset. */
function countingBytes(start: number, length: number): Buffer {
  const data = Buffer.alloc(length);
  for (let index = 0; index < length; index++) {
    data[index] = (start + index) & 0xff;
  }
  return data;
}

describe('ResendWindow', () => {
  it('drains the newest chunks in order', () => {
    const window = new ResendWindow(300);
    let dropped = 0;
    for (let index = 0; index < 10; index++) {
      dropped += window.push(countingBytes(index * 800, 800), 100);
    }
    assert.equal(window.length, 3);
    assert.equal(window.byteLength, 2400);
    assert.equal(window.durationMs, 300);
    assert.equal(dropped, 7 * 800);

    const chunks = window.drain();
    assert.deepEqual(
      chunks.map((chunk) => chunk.durationMs),
      [100, 100, 100],
    );
    assert.deepEqual(Buffer.concat(chunks.map((chunk) => chunk.data)), countingBytes(7 * 800, 2400));
    assert.equal(window.length, 0);
    assert.equal(window.byteLength, 0);
    assert.equal(window.durationMs, 0);
  });

  it('keeps an overlong newest chunk', () => {
    const window = new ResendWindow(100);
    window.push(countingBytes(0, 10), 50);
    assert.equal(window.push(countingBytes(10, 40), 400), 10);
    assert.equal(window.length, 1);
    assert.deepEqual(window.drain()[0]!.data, countingBytes(10, 40));
  });

  it('matches a list model across wrap-arounds', () => {
    // A seeded generator, so a failure can be replayed.
    let seed = 12345;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const window = new ResendWindow(3000);
    const model: Array<{ data: Buffer; durationMs: number }> = [];
    let next = 0;
    for (let step = 0; step < 5000; step++) {
      const length = 1 + Math.floor(random() * 4000);
      const durationMs = [10, 20, 40, 100, 250][Math.floor(random() * 5)]!;
      const data = countingBytes(next, length);
      next += length;

      let expectedDropped = 0;
      model.push({ data, durationMs });
      let total = model.reduce((sum, chunk) => sum + chunk.durationMs, 0);
      while (total > 3000 && model.length > 1) {
        const oldest = model.shift()!;
        total -= oldest.durationMs;
        expectedDropped += oldest.data.length;
      }
      assert.equal(window.push(data, durationMs), expectedDropped, `bytes dropped at step ${step}`);
      assert.equal(window.length, model.length);

      if (step % 997 === 0) {
        const drained = window.drain();
        assert.deepEqual(
          drained.map((chunk) => chunk.durationMs),
          model.map((chunk) => chunk.durationMs),
        );
        assert.deepEqual(Buffer.concat(drained.map((chunk) => chunk.data)), Buffer.concat(model.map((chunk) => chunk.data)));
        model.length = 0;
      }
    }
    const drained = window.drain();
    assert.deepEqual(Buffer.concat(drained.map((chunk) => chunk.data)), Buffer.concat(model.map((chunk) => chunk.data)));
  });

  it('copies the pushed Buffers', () => {
    const window = new ResendWindow(1000);
    const data = countingBytes(0, 64);
    window.push(data, 20);
    data.fill(0);
    assert.deepEqual(window.drain()[0]!.data, countingBytes(0, 64));
  });

  it('grows close to its content', () => {
    // 3 s of 16-bit 16 kHz audio in 100 ms frames: 96 000 bytes.
    const window = new ResendWindow(3000);
    for (let index = 0; index < 300; index++) {
      window.push(Buffer.alloc(3200), 100);
    }
    assert.equal(window.byteLength, 96_000);
    // The window's 3 s at the frames' rate, and room for the frame being pushed.
    assert.equal(window.capacityBytes, 96_000 + 3200);
  });
});

import { Transform, type TransformCallback } from 'node:stream';

import { AudioFormatError } from '../errors.ts';
import { bytesForDuration, bytesPerSampleFrame, durationMsOf, type AudioFormat, type AudioFrame } from './format.ts';

export interface FramerOptions {
  /** Format of the encoded bytes written in. */
  format: AudioFormat;
  /** Audio per frame, in milliseconds; rounded down to whole sample frames. */
  frameMs: number;
}

/**
 * Transform from encoded audio Buffers of any size to `AudioFrame`s of
 * `frameMs` each. Timestamps count the sample frames emitted since the
 * start, so the timeline stays exact whatever the chunk sizes. At the end
 * of input the remainder goes out as a shorter final frame. A trailing
 * partial sample frame (bytes that do not make a whole sample for every
 * channel) is dropped and counted in `droppedBytes`.
 */
export class Framer extends Transform {
  readonly format: AudioFormat;
  readonly frameBytes: number;

  private readonly sampleFrameBytes: number;
  private pending: Buffer;
  private pendingBytes = 0;
  private emittedSampleFrames = 0;
  private droppedByteCount = 0;

  /** @throws AudioFormatError when `frameMs` is shorter than one sample frame. */
  constructor(options: FramerOptions) {
    super({ writableObjectMode: false, readableObjectMode: true });
    this.format = options.format;
    this.sampleFrameBytes = bytesPerSampleFrame(options.format);
    this.frameBytes = bytesForDuration(options.format, options.frameMs);
    if (this.frameBytes === 0) {
      throw new AudioFormatError(
        `invalid frame duration ${options.frameMs} ms: shorter than one sample at ${options.format.sampleRateHz} Hz; use a longer frame_ms`,
      );
    }
    this.pending = Buffer.allocUnsafe(this.frameBytes);
  }

  /** Bytes dropped at the end because they did not make a whole sample frame. */
  get droppedBytes(): number {
    return this.droppedByteCount;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    let offset = 0;
    while (offset < chunk.length) {
      const copied = chunk.copy(this.pending, this.pendingBytes, offset);
      this.pendingBytes += copied;
      offset += copied;
      if (this.pendingBytes === this.frameBytes) {
        this.pushPending(this.frameBytes);
        this.pending = Buffer.allocUnsafe(this.frameBytes);
      }
    }
    callback();
  }

  override _flush(callback: TransformCallback): void {
    const wholeBytes = this.pendingBytes - (this.pendingBytes % this.sampleFrameBytes);
    this.droppedByteCount += this.pendingBytes - wholeBytes;
    if (wholeBytes > 0) {
      this.pushPending(wholeBytes);
    }
    callback();
  }

  private pushPending(byteLength: number): void {
    const data = byteLength === this.pending.length ? this.pending : this.pending.subarray(0, byteLength);
    const frame: AudioFrame = {
      data,
      timestampMs: (this.emittedSampleFrames * 1000) / this.format.sampleRateHz,
      durationMs: durationMsOf(this.format, byteLength),
    };
    this.emittedSampleFrames += byteLength / this.sampleFrameBytes;
    this.pendingBytes = 0;
    this.push(frame);
  }
}

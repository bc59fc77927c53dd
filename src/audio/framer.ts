import { Transform, type TransformCallback } from 'node:stream';

import { AudioFormatError } from '../errors.ts';
import { bytesForDuration, bytesPerSampleFrame, durationMsOf, type AudioFormat, type AudioFrame } from './format.ts';

export interface FramerOptions {
  /** Format of the encoded bytes written in. */
  format: AudioFormat;
  /** Audio per frame, in milliseconds; rounded down to whole sample frames. */
  frameMs: number;
  /**
   * Sample frames to leave out of the first frame, so that later frames end
   * where the source's packets end although a resampler holds back this
   * many frames. 0 when omitted.
   */
  firstFrameShortBy?: number;
  /**
   * Fills two Buffers by turns instead of a new Buffer per frame, for a
   * consumer that copies what it keeps (see `StreamConnection.writeBorrowed`).
   * A frame's bytes then stay as they are until the frame after next is cut.
   */
  alternateBuffers?: boolean;
}

/**
 * Cuts encoded audio Buffers of any size into `AudioFrame`s of `frameMs`
 * each, synchronously. Timestamps count the sample frames emitted since the
 * start, so the timeline stays exact whatever the chunk sizes. At the end
 * of input the remainder goes out as a shorter final frame. A trailing
 * partial sample frame (bytes that do not make a whole sample for every
 * channel) is dropped and counted in `droppedBytes`.
 */
export class FrameCutter {
  readonly format: AudioFormat;
  readonly frameBytes: number;

  private readonly sampleFrameBytes: number;
  private pending: Buffer;
  /** The Buffer that the frame after this one fills, when two alternate. */
  private spare: Buffer | undefined;
  private pendingBytes = 0;
  /** Bytes that complete the frame being filled: `frameBytes`, except for a shortened first frame. */
  private pendingLimit: number;
  private emittedSampleFrames = 0;
  private droppedByteCount = 0;

  /** @throws AudioFormatError when `frameMs` is shorter than one sample frame. */
  constructor(options: FramerOptions) {
    this.format = options.format;
    this.sampleFrameBytes = bytesPerSampleFrame(options.format);
    this.frameBytes = bytesForDuration(options.format, options.frameMs);
    if (this.frameBytes === 0) {
      throw new AudioFormatError(
        `invalid frame duration ${options.frameMs} ms: shorter than one sample at ${options.format.sampleRateHz} Hz; use a longer frame_ms`,
      );
    }
    if (options.alternateBuffers === true) {
      this.pending = Buffer.allocUnsafeSlow(this.frameBytes);
      this.spare = Buffer.allocUnsafeSlow(this.frameBytes);
    } else {
      this.pending = Buffer.allocUnsafe(this.frameBytes);
    }
    const shortByBytes = (options.firstFrameShortBy ?? 0) * this.sampleFrameBytes;
    this.pendingLimit = shortByBytes > 0 && shortByBytes < this.frameBytes ? this.frameBytes - shortByBytes : this.frameBytes;
  }

  /** Bytes dropped at the end because they did not make a whole sample frame. */
  get droppedBytes(): number {
    return this.droppedByteCount;
  }

  /** Copies `chunk` in and hands every completed frame to `emit`; the frame's Buffer is its own. */
  write(chunk: Buffer, emit: (frame: AudioFrame) => void): void {
    let offset = 0;
    while (offset < chunk.length) {
      let copied: number;
      if (offset === 0 && chunk.length <= this.pendingLimit - this.pendingBytes) {
        // The usual case, a packet's audio that fits the frame: TypedArray#set copies it without
        // the validation and the temporary view of Buffer#copy.
        this.pending.set(chunk, this.pendingBytes);
        copied = chunk.length;
      } else {
        copied = chunk.copy(this.pending, this.pendingBytes, offset, offset + this.pendingLimit - this.pendingBytes);
      }
      this.pendingBytes += copied;
      offset += copied;
      if (this.pendingBytes === this.pendingLimit) {
        const frame = this.takePending(this.pendingLimit);
        if (this.spare === undefined) {
          this.pending = Buffer.allocUnsafe(this.frameBytes);
        } else {
          [this.pending, this.spare] = [this.spare, this.pending];
        }
        this.pendingLimit = this.frameBytes;
        emit(frame);
      }
    }
  }

  /** Hands the remainder to `emit` as a shorter final frame. */
  finish(emit: (frame: AudioFrame) => void): void {
    const wholeBytes = this.pendingBytes - (this.pendingBytes % this.sampleFrameBytes);
    this.droppedByteCount += this.pendingBytes - wholeBytes;
    this.pendingBytes = wholeBytes;
    if (wholeBytes > 0) {
      emit(this.takePending(wholeBytes));
    }
  }

  private takePending(byteLength: number): AudioFrame {
    const data = byteLength === this.pending.length ? this.pending : this.pending.subarray(0, byteLength);
    const frame: AudioFrame = {
      data,
      timestampMs: (this.emittedSampleFrames * 1000) / this.format.sampleRateHz,
      durationMs: durationMsOf(this.format, byteLength),
    };
    this.emittedSampleFrames += byteLength / this.sampleFrameBytes;
    this.pendingBytes = 0;
    return frame;
  }
}

/** `FrameCutter` as a Transform from encoded Buffers to `AudioFrame` objects, for sources that wait for their consumer. */
export class Framer extends Transform {
  private readonly cutter: FrameCutter;
  private readonly pushFrame = (frame: AudioFrame): void => {
    this.push(frame);
  };

  /** @throws AudioFormatError when `frameMs` is shorter than one sample frame. */
  constructor(options: FramerOptions) {
    super({ writableObjectMode: false, readableObjectMode: true });
    this.cutter = new FrameCutter(options);
  }

  get format(): AudioFormat {
    return this.cutter.format;
  }

  get frameBytes(): number {
    return this.cutter.frameBytes;
  }

  /** Bytes dropped at the end because they did not make a whole sample frame. */
  get droppedBytes(): number {
    return this.cutter.droppedBytes;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.cutter.write(chunk, this.pushFrame);
    callback();
  }

  override _flush(callback: TransformCallback): void {
    this.cutter.finish(this.pushFrame);
    callback();
  }
}

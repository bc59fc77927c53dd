import type { Chunk } from './chunk-queue.ts';

/** Chunk entries of the first rings of lengths and durations, which double when full. */
const INITIAL_ENTRIES = 16;

/**
 * The audio last sent on one stream, kept to send again after a reconnect.
 * Each chunk is copied into one ring of bytes owned by the window, with its
 * length and duration in two typed rings. A live stream sends a frame every
 * few tens of milliseconds and keeps each for seconds. Kept as they are,
 * the frames of a few hundred streams move thousands of objects a second
 * into V8's old space, and each pins the shared pool slab it was cut from.
 */
export class ResendWindow {
  /** Empty until the first chunk, which sizes it for the whole window. */
  private bytes: Buffer = Buffer.alloc(0);
  /** Index in `bytes` of the first byte kept. */
  private byteHead = 0;
  private byteCount = 0;

  private lengths = new Int32Array(INITIAL_ENTRIES);
  private durations = new Float64Array(INITIAL_ENTRIES);
  private entryHead = 0;
  private entryCount = 0;
  private totalMs = 0;

  /** Keeps the chunks of at most `windowMs`, and always the last one. */
  constructor(private readonly windowMs: number) {}

  get length(): number {
    return this.entryCount;
  }

  get byteLength(): number {
    return this.byteCount;
  }

  get durationMs(): number {
    return this.totalMs;
  }

  /** Bytes the window has allocated for audio. */
  get capacityBytes(): number {
    return this.bytes.length;
  }

  /**
   * Copies `data` in as the newest chunk, after dropping the oldest chunks
   * that would leave more than `windowMs` kept. Returns the bytes dropped.
   */
  push(data: Buffer, durationMs: number): number {
    let droppedBytes = 0;
    while (this.entryCount > 0 && this.totalMs + durationMs > this.windowMs) {
      droppedBytes += this.dropOldest();
    }
    this.reserve(data.length, durationMs);
    let tail = (this.byteHead + this.byteCount) % this.bytes.length;
    const firstPart = Math.min(data.length, this.bytes.length - tail);
    data.copy(this.bytes, tail, 0, firstPart);
    if (firstPart < data.length) {
      data.copy(this.bytes, 0, firstPart);
    }
    this.byteCount += data.length;

    tail = (this.entryHead + this.entryCount) % this.lengths.length;
    this.lengths[tail] = data.length;
    this.durations[tail] = durationMs;
    this.entryCount += 1;
    this.totalMs += durationMs;
    return droppedBytes;
  }

  /** Removes every chunk and returns copies of them, oldest first. */
  drain(): Chunk[] {
    const chunks: Chunk[] = [];
    let byteIndex = this.byteHead;
    for (let entry = 0; entry < this.entryCount; entry++) {
      const slot = (this.entryHead + entry) % this.lengths.length;
      const length = this.lengths[slot]!;
      const data = Buffer.allocUnsafe(length);
      const firstPart = Math.min(length, this.bytes.length - byteIndex);
      this.bytes.copy(data, 0, byteIndex, byteIndex + firstPart);
      if (firstPart < length) {
        this.bytes.copy(data, firstPart, 0, length - firstPart);
      }
      byteIndex = (byteIndex + length) % this.bytes.length;
      chunks.push({ data, durationMs: this.durations[slot]! });
    }
    this.clear();
    return chunks;
  }

  clear(): void {
    this.byteHead = 0;
    this.byteCount = 0;
    this.entryHead = 0;
    this.entryCount = 0;
    this.totalMs = 0;
  }

  private dropOldest(): number {
    const length = this.lengths[this.entryHead]!;
    this.totalMs -= this.durations[this.entryHead]!;
    this.entryHead = (this.entryHead + 1) % this.lengths.length;
    this.entryCount -= 1;
    this.byteHead = (this.byteHead + length) % this.bytes.length;
    this.byteCount -= length;
    if (this.entryCount === 0) {
      // Float sums drift, so an empty window is set to exactly 0 ms.
      this.totalMs = 0;
    }
    return length;
  }

  /**
   * Grows the rings, keeping their order, so one more chunk of `byteLength`
   * bytes fits. The first growth sizes the bytes for the whole window at
   * the chunk's rate, because a stream's format, and so its rate, is fixed.
   */
  private reserve(byteLength: number, durationMs: number): void {
    if (this.byteCount + byteLength > this.bytes.length) {
      const windowBytes = durationMs > 0 ? Math.ceil((this.windowMs * byteLength) / durationMs) + byteLength : 0;
      const neededBytes = this.byteCount + byteLength;
      const grownBytes = windowBytes >= neededBytes && this.bytes.length < windowBytes ? windowBytes : Math.ceil((neededBytes * 1.25) / 1024) * 1024;
      const grown = Buffer.allocUnsafeSlow(grownBytes);
      const firstPart = Math.min(this.byteCount, this.bytes.length - this.byteHead);
      this.bytes.copy(grown, 0, this.byteHead, this.byteHead + firstPart);
      this.bytes.copy(grown, firstPart, 0, this.byteCount - firstPart);
      this.bytes = grown;
      this.byteHead = 0;
    }
    if (this.entryCount === this.lengths.length) {
      const lengths = new Int32Array(this.lengths.length * 2);
      const durations = new Float64Array(this.lengths.length * 2);
      for (let entry = 0; entry < this.entryCount; entry++) {
        const slot = (this.entryHead + entry) % this.lengths.length;
        lengths[entry] = this.lengths[slot]!;
        durations[entry] = this.durations[slot]!;
      }
      this.lengths = lengths;
      this.durations = durations;
      this.entryHead = 0;
    }
  }
}

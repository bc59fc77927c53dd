/** A binary message waiting to be sent, with the playback time it carries. */
export interface Chunk {
  data: Buffer;
  durationMs: number;
  /** Set on chunks queued again after a reconnect, so they are not counted twice. */
  resent?: boolean;
}

/**
 * FIFO of chunks with running totals of bytes and duration. Removal from the
 * head is O(1) amortised, because live streams push and shift one chunk per
 * frame for hours.
 */
export class ChunkQueue {
  private items: Array<Chunk | undefined> = [];
  private head = 0;
  private totalBytes = 0;
  private totalMs = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  get durationMs(): number {
    return this.totalMs;
  }

  push(chunk: Chunk): void {
    this.items.push(chunk);
    this.totalBytes += chunk.data.length;
    this.totalMs += chunk.durationMs;
  }

  /** Puts chunks back in front, in the order given, ahead of everything queued. */
  unshiftAll(chunks: Chunk[]): void {
    if (chunks.length === 0) {
      return;
    }
    const rest = this.items.slice(this.head) as Chunk[];
    this.items = [...chunks, ...rest];
    this.head = 0;
    for (const chunk of chunks) {
      this.totalBytes += chunk.data.length;
      this.totalMs += chunk.durationMs;
    }
  }

  peek(): Chunk | undefined {
    return this.items[this.head];
  }

  /** Returns the chunk queued last, if any. */
  peekLast(): Chunk | undefined {
    return this.length > 0 ? this.items[this.items.length - 1] : undefined;
  }

  shift(): Chunk | undefined {
    const chunk = this.items[this.head];
    if (chunk === undefined) {
      return undefined;
    }
    this.items[this.head] = undefined;
    this.head += 1;
    this.totalBytes -= chunk.data.length;
    this.totalMs -= chunk.durationMs;
    // Compact once the dead prefix is large, so memory follows the live length.
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    if (this.length === 0) {
      this.totalBytes = 0;
      this.totalMs = 0;
    }
    return chunk;
  }

  /** Removes and returns every chunk, oldest first. */
  drain(): Chunk[] {
    const chunks = this.items.slice(this.head) as Chunk[];
    this.items = [];
    this.head = 0;
    this.totalBytes = 0;
    this.totalMs = 0;
    return chunks;
  }
}

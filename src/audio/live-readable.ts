/**
 * The Readable of a live source that emits one block per packet. A push
 * through a Readable costs its buffer bookkeeping, a `data` event and a
 * `process.nextTick` for `maybeReadMore` on every block. So the live path
 * registers its `data` handler here too, and blocks go to it directly
 * whenever nothing is queued in the Readable ahead of them.
 */
import { Readable } from 'node:stream';

import type { PcmBlock } from './format.ts';

export class LiveReadable extends Readable {
  private consumer: ((block: PcmBlock) => void) | undefined;
  /** Set once `push(null)` has ended the stream, so that later blocks meet push()'s error. */
  private endPushed = false;

  constructor() {
    super({ objectMode: true, read: () => {} });
  }

  /**
   * Sets the function that receives blocks directly, or clears it. The
   * caller must also listen to `data`, which delivers the blocks that were
   * queued before it started to flow.
   */
  setConsumer(consumer: ((block: PcmBlock) => void) | undefined): void {
    this.consumer = consumer;
  }

  override push(chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk === null) {
      this.endPushed = true;
    }
    return super.push(chunk, encoding);
  }

  /**
   * Hands `block` to the consumer when the Readable flows and has no queued
   * blocks, so blocks keep the order of the calls. Otherwise pushes `block`
   * onto the Readable.
   */
  deliver(block: PcmBlock): void {
    const consumer = this.consumer;
    if (consumer !== undefined && this.readableLength === 0 && this.readableFlowing === true && !this.destroyed && !this.endPushed) {
      consumer(block);
      return;
    }
    this.push(block);
  }
}

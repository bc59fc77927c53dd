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

  /**
   * Hands `block` to the consumer when the Readable flows and has no queued
   * blocks, so blocks keep the order of the calls. Otherwise pushes `block`
   * onto the Readable.
   */
  deliver(block: PcmBlock): void {
    const consumer = this.consumer;
    if (consumer !== undefined && this.readableLength === 0 && this.readableFlowing === true && !this.destroyed) {
      consumer(block);
      return;
    }
    this.push(block);
  }
}

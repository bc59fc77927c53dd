import { Readable } from 'node:stream';

import type { PcmBlock } from '../../audio/format.ts';
import type { Clock } from '../../clock.ts';
import type { Logger } from '../../logger.ts';
import type { AudioSource } from '../audio-source.ts';
import type { CaptureSubscriber } from './device-capture.ts';

export interface DeviceSourceOptions {
  /** 0-based capture channels this stream takes. */
  channelSelection: number[];
  /** Audio the Readable holds for a consumer that fell behind, in milliseconds; newer blocks are dropped beyond it. */
  maxBufferedMs: number;
  /** Called once when the source stops or its Readable is destroyed. */
  onStop: (source: DeviceSource) => void;
  logger: Logger;
  clock: Clock;
  /** Minimum time between two warnings about dropped blocks, in milliseconds. */
  warnIntervalMs?: number;
}

export interface DeviceSourceStats {
  blocks: number;
  /** Blocks dropped because the consumer held `maxBufferedMs` of audio already. */
  droppedBlocks: number;
  droppedMs: number;
}

/**
 * One stream's view of a shared device capture: an object-mode Readable of
 * the capture's blocks, timestamped from this source's first block.
 *
 * A live source cannot wait for its consumer. Blocks are pushed as they
 * arrive, and while the consumer holds `maxBufferedMs` of audio or more,
 * new blocks are dropped and counted, so one stalled stream neither grows
 * memory without bound nor holds up the other streams of the device.
 */
export class DeviceSource implements AudioSource, CaptureSubscriber {
  readonly kind = 'device';
  readonly live = true;
  readonly readable: Readable;
  readonly channelSelection: readonly number[];
  readonly requiredChannels: number;

  private readonly options: DeviceSourceOptions;
  private readonly log: Logger;
  private readonly warnIntervalMs: number;
  private firstTimestampMs: number | undefined;
  private lastBlockMs = 0;
  private stopped = false;
  private lastDropWarningAtMs: number | undefined;
  private readonly counters: DeviceSourceStats = { blocks: 0, droppedBlocks: 0, droppedMs: 0 };

  constructor(options: DeviceSourceOptions) {
    this.options = options;
    this.log = options.logger;
    this.warnIntervalMs = options.warnIntervalMs ?? 10_000;
    this.channelSelection = [...options.channelSelection];
    this.requiredChannels = Math.max(...options.channelSelection) + 1;
    this.readable = new Readable({
      objectMode: true,
      // Blocks are pushed by the capture; there is nothing to fetch on demand.
      read: () => {},
      destroy: (error, callback) => {
        this.detach();
        callback(error);
      },
    });
  }

  get stats(): DeviceSourceStats {
    return { ...this.counters };
  }

  deliver(block: PcmBlock): void {
    if (this.stopped) {
      return;
    }
    const blockMs = ((block.samples.length / block.channels) * 1000) / block.sampleRateHz;
    this.lastBlockMs = blockMs;
    if (this.readable.readableLength * this.lastBlockMs >= this.options.maxBufferedMs) {
      this.drop(blockMs);
      return;
    }
    this.firstTimestampMs ??= block.timestampMs;
    this.counters.blocks += 1;
    this.readable.push({ ...block, timestampMs: block.timestampMs - this.firstTimestampMs });
  }

  /** Stops taking blocks and ends the Readable after the blocks it holds. */
  stop(): void {
    if (this.stopped) {
      return;
    }
    this.detach();
    this.readable.push(null);
  }

  private detach(): void {
    if (this.stopped) {
      return;
    }
    this.stopped = true;
    this.options.onStop(this);
    if (this.counters.droppedBlocks > 0) {
      this.log.warn({ ...this.counters }, 'device source stopped after dropping blocks');
    }
  }

  private drop(blockMs: number): void {
    this.counters.droppedBlocks += 1;
    this.counters.droppedMs += blockMs;
    const nowMs = this.options.clock.nowMs();
    if (this.lastDropWarningAtMs !== undefined && nowMs - this.lastDropWarningAtMs < this.warnIntervalMs) {
      return;
    }
    this.lastDropWarningAtMs = nowMs;
    this.log.warn(
      { ...this.counters, maxBufferedMs: this.options.maxBufferedMs },
      'stream is not keeping up with the device; dropping new audio',
    );
  }
}

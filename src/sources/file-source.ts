import { Readable } from 'node:stream';

import type { PcmBlock } from '../audio/format.ts';
import { systemClock, type Clock } from '../clock.ts';
import type { FileSourceConfig } from '../config/types.ts';
import { SourceError } from '../errors.ts';
import { createSilentLogger, type Logger } from '../logger.ts';
import type { AudioSource } from './audio-source.ts';
import { WavFileReader } from './wav-file.ts';

export interface FileSourceOptions {
  logger?: Logger;
  clock?: Clock;
  /** Audio per block, in milliseconds; 20 when paced at real time, 100 otherwise. */
  blockMs?: number;
}

/** Blocks the Readable buffers ahead of its consumer. */
const HIGH_WATER_BLOCKS = 2;

/**
 * Producer states:
 *
 *   idle --_read--> reading --block read--> waiting (realtime, block not yet due) --timer--> idle
 *                      \--------------------------- block pushed ---------------------------/
 *   reading --end of data or stop()--> ended;  idle/waiting --stop()--> ended
 */
type ProducerState = 'idle' | 'reading' | 'waiting' | 'ended';

/**
 * A WAV file as an audio source: an object-mode Readable of `PcmBlock`s
 * whose `timestampMs` is the block's offset in the file.
 *
 * Without `realtime` it reads a block only when the consumer requests one
 * (backpressure). With `realtime` each block is also held until the moment
 * its last sample would have been played. That moment is counted on an
 * absolute schedule from the first read, so the audio never runs ahead of
 * real time and timer delays do not accumulate. A consumer that falls
 * behind gets the overdue blocks as fast as it reads them.
 */
export class FileSource implements AudioSource {
  readonly kind = 'file';
  readonly live = false;
  readonly readable: Readable;
  readonly path: string;
  readonly realtime: boolean;
  readonly format: { sampleRateHz: number; channels: number };
  /** Length of the audio in the file when it was opened, in milliseconds. */
  readonly durationMs: number;

  private readonly reader: WavFileReader;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly blockFrames: number;
  private state: ProducerState = 'idle';
  private scheduleStartMs: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopRequested = false;
  private blockCount = 0;

  private constructor(config: FileSourceConfig, reader: WavFileReader, options: FileSourceOptions) {
    this.reader = reader;
    this.path = config.path;
    this.realtime = config.realtime;
    this.format = { sampleRateHz: reader.info.sampleRateHz, channels: reader.info.channels };
    this.durationMs = reader.info.durationMs;
    this.log = options.logger ?? createSilentLogger();
    this.clock = options.clock ?? systemClock;
    const blockMs = options.blockMs ?? (config.realtime ? 20 : 100);
    this.blockFrames = Math.max(1, Math.round((this.format.sampleRateHz * blockMs) / 1000));
    this.readable = new Readable({
      objectMode: true,
      highWaterMark: HIGH_WATER_BLOCKS,
      read: () => this.onRead(),
      destroy: (error, callback) => {
        this.cancelTimer();
        this.state = 'ended';
        this.reader.close().then(
          () => callback(error),
          (closeError: unknown) => callback(error ?? (closeError as Error)),
        );
      },
    });
  }

  /**
   * Opens the WAV file that `config.path` names and reads its header.
   *
   * @throws SourceError when the file cannot be read.
   * @throws AudioFormatError when it is not a WAV file of a supported encoding.
   */
  static async open(config: FileSourceConfig, options: FileSourceOptions = {}): Promise<FileSource> {
    const reader = await WavFileReader.open(config.path);
    const source = new FileSource(config, reader, options);
    const info = reader.info;
    source.log.info(
      {
        path: config.path,
        sampleEncoding: info.sampleEncoding,
        sampleRateHz: info.sampleRateHz,
        channels: info.channels,
        durationMs: Math.round(info.durationMs),
        realtime: config.realtime,
      },
      'file source opened',
    );
    if (info.truncated || info.declaredDataBytes === undefined) {
      source.log.warn(
        { path: config.path, declaredDataBytes: info.declaredDataBytes ?? null },
        'WAV data size is missing or larger than the file; reading to end of file',
      );
    }
    return source;
  }

  /** Blocks pushed so far. */
  get blocksEmitted(): number {
    return this.blockCount;
  }

  /** Stops reading; the Readable ends after the blocks already pushed. */
  stop(): void {
    if (this.state === 'ended' || this.stopRequested) {
      return;
    }
    this.stopRequested = true;
    // A block being read is dropped when the read completes; see readBlock.
    if (this.state !== 'reading') {
      this.finish();
    }
  }

  private onRead(): void {
    if (this.state !== 'idle') {
      return;
    }
    if (this.stopRequested) {
      this.finish();
      return;
    }
    this.scheduleStartMs ??= this.clock.nowMs();
    this.state = 'reading';
    void this.readBlock();
  }

  private async readBlock(): Promise<void> {
    const startFrame = this.reader.positionFrames;
    let samples: Float32Array | null;
    try {
      samples = await this.reader.read(this.blockFrames);
    } catch (error) {
      this.state = 'ended';
      this.readable.destroy(
        new SourceError(`reading WAV file ${this.path} failed: ${(error as Error).message}`, { cause: error }),
      );
      return;
    }
    if (this.stopRequested || samples === null) {
      this.finish();
      return;
    }
    const block: PcmBlock = {
      samples,
      sampleRateHz: this.format.sampleRateHz,
      channels: this.format.channels,
      timestampMs: (startFrame * 1000) / this.format.sampleRateHz,
    };
    if (!this.realtime) {
      this.pushBlock(block);
      return;
    }
    const endFrame = startFrame + samples.length / this.format.channels;
    this.state = 'waiting';
    this.waitUntilDue(block, (this.scheduleStartMs ?? 0) + (endFrame * 1000) / this.format.sampleRateHz);
  }

  /** Pushes `block` once the clock reaches `dueMs`, re-arming if a timer fires early. */
  private waitUntilDue(block: PcmBlock, dueMs: number): void {
    const delayMs = dueMs - this.clock.nowMs();
    if (delayMs <= 0) {
      this.pushBlock(block);
      return;
    }
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      if (this.state === 'waiting') {
        this.waitUntilDue(block, dueMs);
      }
    }, Math.ceil(delayMs));
  }

  private pushBlock(block: PcmBlock): void {
    this.state = 'idle';
    this.blockCount += 1;
    // Whether push returns false or not, the stream calls _read again once it wants more.
    this.readable.push(block);
  }

  private finish(): void {
    if (this.state === 'ended') {
      return;
    }
    this.cancelTimer();
    this.state = 'ended';
    this.log.info(
      {
        path: this.path,
        blocks: this.blockCount,
        positionMs: Math.round((this.reader.positionFrames * 1000) / this.format.sampleRateHz),
        stopped: this.stopRequested,
      },
      'file source ended',
    );
    this.readable.push(null);
    this.reader.close().catch((error: unknown) => {
      this.log.warn({ err: error, path: this.path }, 'closing WAV file failed');
    });
  }

  private cancelTimer(): void {
    if (this.timer !== undefined) {
      this.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
  }
}

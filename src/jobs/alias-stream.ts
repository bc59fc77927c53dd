import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import type { Clock } from '../clock.ts';
import type { DeliveryConfig, OutputConfig } from '../config/types.ts';
import { FrameCutter, Framer } from '../audio/framer.ts';
import { measureFrameLevel, SILENCE_DBFS, type FrameLevel } from '../audio/frame-level.ts';
import { PcmConversion, PcmConverter } from '../audio/pcm-converter.ts';
import type { AudioFormat, AudioFrame } from '../audio/format.ts';
import { runLivePath } from '../audio/live-path.ts';
import type { Logger } from '../logger.ts';
import { StreamConnection, type RemoteStreamStatus, type StreamOutcome, type StreamStats } from '../transport/stream-connection.ts';
import type { JobsClient } from './jobs-client.ts';

export interface AliasStreamOptions {
  jobId: string;
  alias: string;
  client: JobsClient;
  /** Object-mode Readable of PcmBlock. */
  readable: Readable;
  inputSampleRateHz: number;
  inputChannels: number;
  /** 0-based input channels this alias takes; all when omitted. */
  channelSelection?: number[];
  /** True for sources that follow their own clock and cannot wait. */
  live: boolean;
  output: OutputConfig;
  delivery: DeliveryConfig;
  logger: Logger;
  clock?: Clock;
}

/** Summary of one alias at exit. */
export interface AliasSummary {
  alias: string;
  secondsSent: number;
  frames: number;
  bytes: number;
  droppedMs: number;
  lostBytes: number;
  reconnects: number;
  results: number;
  outcome: StreamOutcome['action'] | 'running';
  doneReceived: boolean;
}

/**
 * One alias of a job: source blocks are converted to the stream's output
 * format, cut into frames and written to the alias's stream connection.
 */
export class AliasStream {
  readonly alias: string;
  readonly connection: StreamConnection;
  readonly format: AudioFormat;
  private readonly options: AliasStreamOptions;
  private readonly log: Logger;
  private pipelineDone: Promise<void> | undefined;
  private outcome: StreamOutcome | undefined;
  /** The last frame handed to the connection; its level is measured only when read, not on every frame. */
  private lastFrame: AudioFrame | undefined;
  private lastLevel: { frame: AudioFrame; level: FrameLevel } | undefined;

  constructor(options: AliasStreamOptions) {
    this.options = options;
    this.alias = options.alias;
    this.log = options.logger;
    this.format = {
      encoding: options.output.format,
      sampleRateHz: options.output.sample_rate_hz,
      channels: options.output.channels,
    };
    const endpoint = options.client.streamEndpoint(options.jobId, options.alias, {
      audioFormat: options.output.format,
      sampleRateHz: options.output.sample_rate_hz,
      channels: options.output.channels,
    });
    this.connection = new StreamConnection({
      endpoint,
      delivery: options.delivery,
      lossless: !options.live,
      fetchRemoteStatus: () => this.fetchRemoteStatus(),
      logger: options.logger,
      ...(options.clock === undefined ? {} : { clock: options.clock }),
    });
    void this.connection.closed.then((outcome) => {
      this.outcome = outcome;
    });
  }

  /** Opens the stream and starts moving audio. Resolves once the pipeline is wired. */
  async start(): Promise<void> {
    const converterOptions = {
      output: this.options.output,
      inputSampleRateHz: this.options.inputSampleRateHz,
      inputChannels: this.options.inputChannels,
      ...(this.options.channelSelection === undefined ? {} : { channelSelection: this.options.channelSelection }),
      logger: this.log,
    };
    const framerOptions = { format: this.format, frameMs: this.options.output.frame_ms };
    if (this.options.live) {
      const conversion = await PcmConversion.create(converterOptions);
      // When frame_ms is a multiple of the source's block length (20 ms RTP packets), frames then end
      // where blocks end, so a frame goes out with its last packet instead of waiting for the next one.
      const cutter = new FrameCutter({ ...framerOptions, firstFrameShortBy: conversion.delayFrames, alternateBuffers: true });
      this.connection.start();
      this.watchPipeline(
        runLivePath({
          readable: this.options.readable,
          conversion,
          cutter,
          onFrame: (frame) => {
            this.lastFrame = frame;
            // A live frame is never refused: the connection drops the oldest audio when an outage lasts too long.
            // The cutter fills the frame's Buffer again two frames later, so the connection copies what it keeps.
            this.connection.writeBorrowed(frame);
          },
        }),
      );
      return;
    }
    const converter = await PcmConverter.create(converterOptions);
    const framer = new Framer(framerOptions);
    const sink = new ConnectionSink(this.connection, (frame) => {
      this.lastFrame = frame;
    });
    this.connection.start();
    this.watchPipeline(pipeline(this.options.readable, converter, framer, sink));
  }

  /** Keeps `done` as the pipeline to wait for, and logs its failure; the stream then ends with what was sent. */
  private watchPipeline(done: Promise<void>): void {
    this.pipelineDone = done.catch((error: unknown) => {
      this.log.error({ err: error }, 'audio pipeline failed; ending the stream with what was sent');
    });
  }

  /** Resolves when the source has ended and every frame has been handed to the connection. */
  async sourceEnded(): Promise<void> {
    await this.pipelineDone;
  }

  /** Sends what is queued, then end-of-stream, and waits for `done`. */
  async end(): Promise<StreamOutcome> {
    await this.pipelineDone;
    return this.connection.end();
  }

  get stats(): StreamStats {
    return this.connection.stats;
  }

  /** RMS and peak level of the last frame handed to the connection, in dBFS. */
  get level(): FrameLevel {
    const frame = this.lastFrame;
    if (frame === undefined) {
      return { rmsDbfs: SILENCE_DBFS, peakDbfs: SILENCE_DBFS };
    }
    if (this.lastLevel?.frame !== frame) {
      this.lastLevel = { frame, level: measureFrameLevel(frame.data, this.format.encoding) };
    }
    return this.lastLevel.level;
  }

  summary(): AliasSummary {
    const stats = this.connection.stats;
    return {
      alias: this.alias,
      secondsSent: Math.round(stats.sentMs) / 1000,
      frames: stats.sentChunks,
      bytes: stats.sentBytes,
      droppedMs: Math.round(stats.droppedMs),
      lostBytes: stats.lostBytes,
      reconnects: stats.reconnects,
      results: stats.results,
      outcome: this.outcome?.action ?? 'running',
      doneReceived: this.outcome?.doneReceived ?? false,
    };
  }

  private async fetchRemoteStatus(): Promise<RemoteStreamStatus | undefined> {
    const job = await this.options.client.getJob(this.options.jobId);
    const stream = job.streams.find((candidate) => candidate.alias === this.alias);
    return stream === undefined ? undefined : { receivedBytes: stream.received_bytes, state: stream.state };
  }
}

/**
 * Last stage of an alias's pipeline. For a file source, a full connection
 * queue delays the write callback, which pauses the file; a live source's
 * frames are always accepted, and the connection drops the oldest.
 */
class ConnectionSink extends Writable {
  private readonly connection: StreamConnection;
  private readonly onFrame: (frame: AudioFrame) => void;

  constructor(connection: StreamConnection, onFrame: (frame: AudioFrame) => void) {
    super({ objectMode: true, highWaterMark: 1 });
    this.connection = connection;
    this.onFrame = onFrame;
  }

  override _write(frame: AudioFrame, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.onFrame(frame);
    if (this.connection.write(frame)) {
      callback();
      return;
    }
    const onDrain = (): void => {
      this.connection.off('closed', onClosed);
      callback();
    };
    const onClosed = (): void => {
      this.connection.off('drain', onDrain);
      callback();
    };
    this.connection.once('drain', onDrain);
    this.connection.once('closed', onClosed);
  }
}

/**
 * One configured job while the agent runs: its JobSession and the streams
 * started from its config, which a reload can add, end or replace one by
 * one while the other streams keep running untouched.
 */
import type { Clock } from '../clock.ts';
import type { JobConfig, RtpSourceConfig, StreamConfig } from '../config/types.ts';
import { AgentError, type StreamClosedError } from '../errors.ts';
import type { AliasStream } from '../jobs/alias-stream.ts';
import { JobSession } from '../jobs/job-session.ts';
import type { JobsClient } from '../jobs/jobs-client.ts';
import type { Logger } from '../logger.ts';
import { openSource } from '../sources/open-source.ts';
import { RtpReceiver } from '../sources/rtp/rtp-receiver.ts';
import { isAliasReady, type AliasSnapshot, type JobSnapshot } from './agent-snapshot.ts';
import { streamKey, type StreamChanges } from './reload-plan.ts';

export interface JobRunnerOptions {
  job: JobConfig;
  client: JobsClient;
  logger: Logger;
  clock: Clock;
  version: string;
  resultsDir: string | undefined;
  resultsOutput?: NodeJS.WritableStream;
  finalizeTimeoutMs: number;
  statsIntervalMs: number;
  /** A stream hit a credential, permission or quota failure. */
  onFatal: (error: StreamClosedError) => void;
  /** The job exists on the server; called before any stream starts. */
  onCreated: (jobId: string) => Promise<void>;
  /** The job reached `finalized` and its results are written. */
  onFinalized: (jobId: string) => Promise<void>;
}

/** A stream started from one entry of the job's `streams`. */
interface RunningStream {
  key: string;
  config: StreamConfig;
  /** Set for RTP sources, which open their aliases when packets arrive. */
  receiver: RtpReceiver | undefined;
  /** Aliases this stream opened in the session. */
  aliases: Set<string>;
}

export class JobRunner {
  readonly name: string;
  readonly session: JobSession;
  private config: JobConfig;
  private readonly options: JobRunnerOptions;
  private readonly log: Logger;
  private readonly streams = new Map<string, RunningStream>();
  /** Streams that failed since their last open, keyed by the AliasStream object. */
  private readonly retrying = new WeakMap<AliasStream, boolean>();
  private readonly stateListeners = new Set<() => void>();
  private streamsEnded = false;

  constructor(options: JobRunnerOptions) {
    this.options = options;
    this.config = options.job;
    this.name = options.job.name;
    this.log = options.logger.child({ component: 'job-runner', job: options.job.name });
    this.session = new JobSession({
      job: options.job,
      client: options.client,
      logger: options.logger,
      resultsDir: options.resultsDir,
      finalizeTimeoutMs: options.finalizeTimeoutMs,
      agentVersion: options.version,
      clock: options.clock,
      ...(options.resultsOutput === undefined ? {} : { resultsOutput: options.resultsOutput }),
    });
    this.session.on('fatal', (error) => options.onFatal(error));
  }

  get jobId(): string | undefined {
    return this.session.jobId;
  }

  /** Creates the job and starts every stream; a stream that fails to start fails the whole start. */
  async start(signal: AbortSignal): Promise<void> {
    const declared = this.config.streams.flatMap((stream) =>
      stream.alias === undefined ? [] : [{ alias: stream.alias, output: stream.output }],
    );
    const jobId = await this.session.create(declared, signal);
    await this.options.onCreated(jobId);
    for (const stream of this.config.streams) {
      await this.startStream(stream);
    }
  }

  /**
   * Applies a reload's stream changes: removed streams end with
   * end-of-stream, replaced ones hand their alias to a stream with the new
   * settings, added ones start. Unchanged streams are not touched. A stream
   * that fails to start is logged and left out; the others still apply.
   */
  async applyStreamChanges(config: JobConfig, changes: StreamChanges): Promise<void> {
    this.config = config;
    for (const key of changes.removed) {
      await this.endStream(key);
    }
    for (const stream of changes.replaced) {
      await this.replaceStream(stream);
    }
    for (const stream of changes.added) {
      try {
        await this.startStream(stream);
        this.log.info({ jobId: this.jobId, stream: streamKey(stream), source: stream.source.type }, 'stream added by reload');
      } catch (error) {
        this.log.error({ err: error, jobId: this.jobId, stream: streamKey(stream) }, 'starting a stream added by reload failed');
      }
    }
  }

  /** Resolves once every source of this job has ended on its own; RTP sources end only when their socket fails. */
  async sourcesEnded(): Promise<void> {
    await Promise.all([this.session.sourcesEnded(), ...this.receivers().map((receiver) => receiver.closed)]);
  }

  /** Closes the RTP sockets, stops every source, and ends every alias with end-of-stream. */
  async endStreams(): Promise<void> {
    if (this.streamsEnded) {
      return;
    }
    this.streamsEnded = true;
    // Closed first, so that no packet opens an alias while the streams end.
    await Promise.all(this.receivers().map((receiver) => receiver.close()));
    await this.session.endStreams();
  }

  /** Finalizes the job, waits for `finalized` and writes its results. */
  async finalize(signal: AbortSignal): Promise<void> {
    await this.session.finalize(signal);
    const jobId = this.jobId;
    if (jobId !== undefined) {
      await this.options.onFinalized(jobId);
    }
  }

  /** Closes every socket and stream at once, without end-of-stream. */
  abort(reason: string): void {
    for (const receiver of this.receivers()) {
      void receiver.close();
    }
    this.session.abortStreams(reason);
  }

  /** True when every stream of this job is ready; see isAliasReady. */
  isReady(): boolean {
    return this.snapshot().aliases.every((alias) => alias.ready);
  }

  /** Calls `listener` on every state change of any of this job's streams; returns a function that removes it. */
  onStreamStateChange(listener: () => void): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  snapshot(): JobSnapshot {
    const summary = this.session.summary();
    const aliases: AliasSnapshot[] = [];
    for (const alias of this.session.aliases) {
      const stream = this.session.getStream(alias);
      if (stream !== undefined) {
        aliases.push(this.aliasSnapshot(stream));
      }
    }
    return {
      name: this.name,
      jobId: summary.jobId,
      status: summary.status,
      aliases,
      rtpSources: [...this.streams.values()].flatMap((running) =>
        running.receiver === undefined
          ? []
          : [{ listen: running.receiver.listen, stream: running.key, counters: running.receiver.counters() }],
      ),
    };
  }

  private aliasSnapshot(stream: AliasStream): AliasSnapshot {
    const { stats, status } = stream.connection;
    const summary = stream.summary();
    const retrying = this.retrying.get(stream) ?? false;
    return {
      alias: stream.alias,
      state: status,
      retrying,
      ready: isAliasReady(status, retrying, summary.outcome),
      outcome: summary.outcome,
      sentBytes: stats.sentBytes,
      sentSeconds: stats.sentMs / 1000,
      sentFrames: stats.sentChunks,
      resentBytes: stats.resentBytes,
      droppedBytes: stats.droppedBytes,
      droppedFrames: stats.droppedChunks,
      droppedSeconds: stats.droppedMs / 1000,
      lostBytes: stats.lostBytes,
      bufferedBytes: stream.connection.pendingBytes,
      bufferedSeconds: stream.connection.pendingMs / 1000,
      reconnects: stats.reconnects,
      results: stats.results,
      levelRmsDbfs: stream.level.rmsDbfs,
      levelPeakDbfs: stream.level.peakDbfs,
    };
  }

  private receivers(): RtpReceiver[] {
    return [...this.streams.values()].flatMap((running) => (running.receiver === undefined ? [] : [running.receiver]));
  }

  private async startStream(stream: StreamConfig): Promise<void> {
    const key = streamKey(stream);
    const running: RunningStream = { key, config: stream, receiver: undefined, aliases: new Set() };
    if (stream.source.type === 'rtp') {
      running.receiver = await this.startRtpSource(running, stream, stream.source);
      this.streams.set(key, running);
      return;
    }
    if (stream.alias === undefined) {
      throw new AgentError(
        'ERR_NOT_SUPPORTED',
        `job ${this.name}: alias_template "${stream.alias_template}" is only valid with an rtp source; set a fixed alias`,
      );
    }
    const opened = await openSource(stream.source, {
      logger: this.options.logger.child({ component: 'source', job: this.name, alias: stream.alias }),
      clock: this.options.clock,
    });
    this.streams.set(key, running);
    await this.addAlias(running, {
      alias: stream.alias,
      source: opened.source,
      inputSampleRateHz: opened.sampleRateHz,
      inputChannels: opened.channels,
      ...(opened.channelSelection === undefined ? {} : { channelSelection: opened.channelSelection }),
      output: stream.output,
      delivery: stream.delivery,
    });
  }

  /**
   * Binds an RTP source. Its aliases start with their first packets, once
   * the payload format is known: the one alias, or one per SSRC with
   * `alias_template`.
   */
  private async startRtpSource(running: RunningStream, stream: StreamConfig, source: RtpSourceConfig): Promise<RtpReceiver> {
    return RtpReceiver.start({
      config: source,
      ...(stream.alias === undefined ? { aliasTemplate: stream.alias_template } : { alias: stream.alias }),
      host: {
        openStream: async (request) => {
          await this.addAlias(running, {
            alias: request.alias,
            source: request.source,
            inputSampleRateHz: request.sampleRateHz,
            inputChannels: request.channels,
            output: stream.output,
            delivery: stream.delivery,
          });
        },
        endStream: async (alias) => {
          await this.session.endStream(alias);
        },
      },
      logger: this.options.logger.child({ component: 'rtp', job: this.name, listen: source.listen }),
      clock: this.options.clock,
      statsIntervalMs: this.options.statsIntervalMs,
    });
  }

  private async addAlias(running: RunningStream, spec: Parameters<JobSession['addStream']>[0]): Promise<void> {
    const stream = await this.session.addStream(spec);
    running.aliases.add(spec.alias);
    stream.connection.on('stateChange', ({ to }) => {
      if (to === 'reconnecting') {
        this.retrying.set(stream, true);
      } else if (to === 'open' || to === 'closed') {
        this.retrying.set(stream, false);
      }
      for (const listener of this.stateListeners) {
        listener();
      }
    });
  }

  /** Ends one stream with end-of-stream on every alias it opened. */
  private async endStream(key: string): Promise<void> {
    const running = this.streams.get(key);
    if (running === undefined) {
      return;
    }
    this.streams.delete(key);
    await running.receiver?.close();
    await Promise.all([...running.aliases].map((alias) => this.session.endStream(alias)));
    this.log.info({ jobId: this.jobId, stream: key, aliases: [...running.aliases] }, 'stream removed by reload');
  }

  /**
   * Replaces a stream whose settings changed. Its aliases are closed without
   * end-of-stream, so that the new stream continues them; an ended alias
   * could not be reopened.
   */
  private async replaceStream(stream: StreamConfig): Promise<void> {
    const key = streamKey(stream);
    const running = this.streams.get(key);
    if (running !== undefined) {
      this.streams.delete(key);
      // The socket or device is released before the new source opens it.
      await running.receiver?.close();
      await Promise.all([...running.aliases].map((alias) => this.session.detachStream(alias)));
    }
    try {
      await this.startStream(stream);
      this.log.info({ jobId: this.jobId, stream: key, source: stream.source.type }, 'stream replaced by reload');
    } catch (error) {
      this.log.error({ err: error, jobId: this.jobId, stream: key }, 'starting the replacement stream failed; the alias stays idle');
    }
  }
}

import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';

import type { Clock } from '../clock.ts';
import type { DeliveryConfig, JobConfig, OutputConfig } from '../config/types.ts';
import { StreamClosedError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { AudioSource } from '../sources/audio-source.ts';
import type { StreamOutcome } from '../transport/stream-connection.ts';
import { AliasStream, type AliasSummary } from './alias-stream.ts';
import type { JobsClient } from './jobs-client.ts';
import type { CreateJobBody, Job, Result, StreamDeclaration } from './protocol.ts';
import { formatResultLines, writeResultsToDir } from './results-file.ts';

/** Source, formats and delivery settings of one alias to stream. */
export interface StreamSpec {
  alias: string;
  source: AudioSource;
  inputSampleRateHz: number;
  inputChannels: number;
  channelSelection?: number[];
  output: OutputConfig;
  delivery: DeliveryConfig;
}

export interface JobSessionOptions {
  job: JobConfig;
  client: JobsClient;
  logger: Logger;
  /** Folder for `<job_id>.jsonl`; results are written to `resultsOutput` when undefined. */
  resultsDir: string | undefined;
  resultsOutput?: NodeJS.WritableStream;
  finalizeTimeoutMs: number;
  clock?: Clock;
  /** Version string sent in job metadata. */
  agentVersion: string;
}

export interface JobSummary {
  name: string;
  jobId: string | undefined;
  status: Job['status'] | 'not created';
  resultsFile: string | undefined;
  results: number;
  aliases: AliasSummary[];
}

/**
 * One configured job: creates it, streams every alias into it, and at the
 * end sends end-of-stream on each alias, finalizes the job and writes its results.
 */
export class JobSession extends EventEmitter<{
  /** A stream hit a credential, permission or quota failure: the agent must stop. */
  fatal: [StreamClosedError];
}> {
  readonly name: string;
  jobId: string | undefined;
  private readonly options: JobSessionOptions;
  private readonly log: Logger;
  private readonly streams = new Map<string, { stream: AliasStream; source: AudioSource }>();
  private status: Job['status'] | 'not created' = 'not created';
  private resultsFile: string | undefined;
  private resultCount = 0;
  private ending = false;

  constructor(options: JobSessionOptions) {
    super();
    this.options = options;
    this.name = options.job.name;
    this.log = options.logger.child({ component: 'job', job: options.job.name });
  }

  /** Creates the job with POST /jobs. `declared` lists the aliases known in advance. */
  async create(declared: Array<{ alias: string; output: OutputConfig }>, signal?: AbortSignal): Promise<string> {
    const job = await this.options.client.createJob(this.buildCreateBody(declared), signal);
    this.jobId = job.job_id;
    this.status = job.status;
    this.log.info({ jobId: job.job_id, analyses: job.analyses }, 'job created');
    return job.job_id;
  }

  /** Starts streaming one alias into the job. */
  async addStream(spec: StreamSpec): Promise<AliasStream> {
    const jobId = this.requireJobId();
    if (this.streams.has(spec.alias)) {
      throw new Error(`alias "${spec.alias}" is already streaming in job ${this.name}`);
    }
    // Built from the root logger: pino repeats a key set by two nested children.
    const logger = this.options.logger.child({ component: 'stream', job: this.name, jobId, alias: spec.alias });
    const stream = new AliasStream({
      jobId,
      alias: spec.alias,
      client: this.options.client,
      readable: spec.source.readable,
      inputSampleRateHz: spec.inputSampleRateHz,
      inputChannels: spec.inputChannels,
      ...(spec.channelSelection === undefined ? {} : { channelSelection: spec.channelSelection }),
      live: spec.source.live,
      output: spec.output,
      delivery: spec.delivery,
      logger,
      ...(this.options.clock === undefined ? {} : { clock: this.options.clock }),
    });
    this.streams.set(spec.alias, { stream, source: spec.source });
    void stream.connection.closed.then((outcome) => this.onStreamClosed(stream, outcome));
    await stream.start();
    return stream;
  }

  /** Aliases streaming now or earlier in this session. */
  get aliases(): string[] {
    return [...this.streams.keys()];
  }

  getStream(alias: string): AliasStream | undefined {
    return this.streams.get(alias)?.stream;
  }

  /** Resolves once every source of this job has ended on its own (finite sources only). */
  async sourcesEnded(): Promise<void> {
    await Promise.all([...this.streams.values()].map(({ stream }) => stream.sourceEnded()));
  }

  /** Ends one alias: stops its source, sends what is queued and end-of-stream, waits for `done`. */
  async endStream(alias: string): Promise<StreamOutcome | undefined> {
    const entry = this.streams.get(alias);
    if (entry === undefined) {
      return undefined;
    }
    entry.source.stop();
    return entry.stream.end();
  }

  /**
   * Stops one alias's source and closes its stream without end-of-stream,
   * then removes the alias from the session, so that a new stream can continue it: the server
   * appends a later connection's audio to an alias that has not ended.
   * Audio still queued for the alias is dropped and counted.
   */
  async detachStream(alias: string): Promise<void> {
    const entry = this.streams.get(alias);
    if (entry === undefined) {
      return;
    }
    entry.source.stop();
    await entry.stream.sourceEnded();
    entry.stream.connection.abort('stream replaced');
    await entry.stream.connection.closed;
    this.streams.delete(alias);
  }

  /** Stops every source and ends every alias's stream. */
  async endStreams(): Promise<void> {
    this.ending = true;
    await Promise.all(this.aliases.map((alias) => this.endStream(alias)));
  }

  /** Closes every stream at once, without end-of-stream. */
  abortStreams(reason: string): void {
    for (const { stream, source } of this.streams.values()) {
      source.stop();
      stream.connection.abort(reason);
    }
  }

  /**
   * Requests finalization with PATCH, waits until the job is `finalized`,
   * then fetches every result and writes them as JSON Lines.
   */
  async finalize(signal?: AbortSignal): Promise<void> {
    if (this.jobId === undefined) {
      return;
    }
    const jobId = this.jobId;
    this.log.info({ jobId }, 'requesting job finalization');
    const patched = await this.options.client.finalizeJob(jobId, signal);
    this.status = patched.status;
    this.log.info({ jobId, status: patched.status }, 'job finalization requested');
    const job = await this.options.client.waitForFinalized(jobId, {
      timeoutMs: this.options.finalizeTimeoutMs,
      ...(signal === undefined ? {} : { signal }),
    });
    this.status = job.status;
    this.log.info({ jobId, finalizedAt: job.finalized_at }, 'job finalized');
    const results = await this.options.client.getResults(jobId, signal === undefined ? {} : { signal });
    this.resultCount = results.length;
    await this.writeResults(jobId, results);
  }

  summary(): JobSummary {
    return {
      name: this.name,
      jobId: this.jobId,
      status: this.status,
      resultsFile: this.resultsFile,
      results: this.resultCount,
      aliases: [...this.streams.values()].map(({ stream }) => stream.summary()),
    };
  }

  /** Aliases whose stream is not closed yet, for the log line of an interrupted shutdown. */
  unfinishedAliases(): string[] {
    return [...this.streams.values()]
      .filter(({ stream }) => stream.connection.status !== 'closed')
      .map(({ stream }) => stream.alias);
  }

  private buildCreateBody(declared: Array<{ alias: string; output: OutputConfig }>): CreateJobBody {
    const { job } = this.options;
    const streams: StreamDeclaration[] = declared.map(({ alias, output }) => ({
      alias,
      audio_format: output.format,
      sample_rate: output.sample_rate_hz,
      num_channels: output.channels,
    }));
    // Fields from `create_body` come last so an account whose schema
    // differs can override any generated field from the YAML.
    return {
      mode: 'realtime',
      analyses: job.analyses,
      ...(streams.length > 0 ? { streams } : {}),
      finalization_trigger: [{ type: 'manual' }],
      metadata: { agent: `modulate-agent/${this.options.agentVersion}`, host: hostname(), job_name: job.name },
      ...job.create_body,
    };
  }

  private onStreamClosed(stream: AliasStream, outcome: StreamOutcome): void {
    const alias = stream.alias;
    const entry = this.streams.get(alias);
    if (entry?.stream !== stream) {
      // A detached stream: its alias may already belong to a replacement.
      return;
    }
    entry.source.stop();
    switch (outcome.action) {
      case 'done':
      case 'aborted':
        return;
      case 'stop_stream':
      case 'reconnect':
      case 'backoff':
        this.log.error({ jobId: this.jobId, alias, err: outcome.error }, 'stream stopped; other aliases continue');
        return;
      case 'stop_job':
        if (!this.ending) {
          this.log.error({ jobId: this.jobId, alias, err: outcome.error }, 'job no longer accepts audio; stopping its streams');
          void this.endStreams();
        }
        return;
      case 'stop_agent':
        this.emit(
          'fatal',
          outcome.error ?? new StreamClosedError(`stream ${alias} was rejected`, { retryable: false }),
        );
        return;
    }
  }

  private async writeResults(jobId: string, results: Result[]): Promise<void> {
    const { resultsDir } = this.options;
    if (resultsDir === undefined) {
      (this.options.resultsOutput ?? process.stdout).write(formatResultLines(jobId, results));
      this.log.info({ jobId, results: results.length }, 'results written to standard output');
      return;
    }
    const file = await writeResultsToDir(resultsDir, jobId, results);
    this.resultsFile = file;
    this.log.info({ jobId, results: results.length, file }, 'results written');
  }

  private requireJobId(): string {
    if (this.jobId === undefined) {
      throw new Error(`job ${this.name} has not been created yet; call create() first`);
    }
    return this.jobId;
  }
}

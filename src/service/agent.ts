import { systemClock, type Clock } from '../clock.ts';
import type { AgentConfig, JobConfig, RtpSourceConfig, StreamConfig } from '../config/types.ts';
import { AgentError, EXIT_CONFIG, JobsApiError, StreamClosedError } from '../errors.ts';
import { JobSession, type JobSummary } from '../jobs/job-session.ts';
import { JobsClient } from '../jobs/jobs-client.ts';
import type { Logger } from '../logger.ts';
import { openSource } from '../sources/open-source.ts';
import { RtpReceiver } from '../sources/rtp/rtp-receiver.ts';

export interface AgentOptions {
  config: AgentConfig;
  logger: Logger;
  version: string;
  /** Where results go when `service.results_dir` is not set. */
  resultsOutput?: NodeJS.WritableStream;
  clock?: Clock;
}

type AgentPhase = 'starting' | 'running' | 'stopping' | 'stopped';

/** Exit code for failures other than configuration: the service manager may restart the agent. */
export const EXIT_FAILURE = 1;

/**
 * The agent's main job: creates every configured job, streams every alias,
 * and on shutdown (or once every finite source has ended) ends the streams,
 * finalizes the jobs and writes their results.
 */
export class Agent {
  private readonly options: AgentOptions;
  private readonly log: Logger;
  private readonly client: JobsClient;
  private readonly sessions: JobSession[] = [];
  private readonly rtpReceivers: RtpReceiver[] = [];
  private readonly clock: Clock;
  private phase: AgentPhase = 'starting';
  private readonly shutdownController = new AbortController();
  private readonly abortController = new AbortController();
  private fatalError: AgentError | undefined;
  private statsTimer: NodeJS.Timeout | undefined;

  constructor(options: AgentOptions) {
    this.options = options;
    this.log = options.logger.child({ component: 'agent' });
    this.clock = options.clock ?? systemClock;
    const { api } = options.config;
    this.client = new JobsClient({
      baseUrl: api.base_url,
      accountId: api.account_id,
      apiKey: api.api_key,
      auth: api.auth,
      requestTimeoutMs: api.request_timeout_ms,
      logger: options.logger,
    });
  }

  /** Runs until every finite source has ended or shutdown() is called; returns the exit code. */
  async run(): Promise<number> {
    const { config } = this.options;
    this.log.info({ jobs: config.jobs.length, baseUrl: config.api.base_url, configFile: config.file }, 'agent starting');
    try {
      for (const job of config.jobs) {
        await this.startJob(job);
      }
      this.phase = 'running';
      this.startStatsTimer();
      await this.waitForEnd();
    } catch (error) {
      this.recordFailure(error);
    }
    return this.stop();
  }

  /** Starts the graceful shutdown: end streams, finalize jobs, write results. */
  shutdown(reason: string): void {
    if (this.shutdownController.signal.aborted) {
      return;
    }
    this.log.info({ reason }, 'shutdown requested');
    this.shutdownController.abort(new Error(reason));
  }

  /** Abandons the graceful shutdown: closes every stream at once and logs what was left unfinished. */
  abort(reason: string): void {
    if (this.abortController.signal.aborted) {
      return;
    }
    this.shutdown(reason);
    const unfinished = this.sessions.map((session) => ({
      job: session.name,
      jobId: session.jobId,
      aliases: session.unfinishedAliases(),
    }));
    this.log.warn({ reason, unfinished }, 'aborting; jobs are left unfinalized');
    this.abortController.abort(new Error(reason));
    for (const receiver of this.rtpReceivers) {
      void receiver.close();
    }
    for (const session of this.sessions) {
      session.abortStreams(reason);
    }
  }

  get isStopping(): boolean {
    return this.phase === 'stopping' || this.phase === 'stopped';
  }

  summaries(): JobSummary[] {
    return this.sessions.map((session) => session.summary());
  }

  private async startJob(job: JobConfig): Promise<void> {
    const session = new JobSession({
      job,
      client: this.client,
      logger: this.options.logger,
      resultsDir: this.options.config.service.results_dir,
      finalizeTimeoutMs: this.options.config.service.finalize_timeout_ms,
      agentVersion: this.options.version,
      clock: this.clock,
      ...(this.options.resultsOutput === undefined ? {} : { resultsOutput: this.options.resultsOutput }),
    });
    session.on('fatal', (error) => this.onFatal(error));
    this.sessions.push(session);

    const declared = job.streams.flatMap((stream) =>
      stream.alias === undefined ? [] : [{ alias: stream.alias, output: stream.output }],
    );
    await session.create(declared, this.shutdownController.signal);
    for (const stream of job.streams) {
      await this.startStream(session, stream);
    }
  }

  private async startStream(session: JobSession, stream: StreamConfig): Promise<void> {
    if (stream.source.type === 'rtp') {
      await this.startRtpSource(session, stream, stream.source);
      return;
    }
    if (stream.alias === undefined) {
      throw new AgentError(
        'ERR_NOT_SUPPORTED',
        `job ${session.name}: alias_template "${stream.alias_template}" needs the RTP demux, which this build does not include; set a fixed alias`,
      );
    }
    const opened = await openSource(stream.source, {
      logger: this.options.logger.child({ component: 'source', job: session.name, alias: stream.alias }),
      clock: this.clock,
    });
    await session.addStream({
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
  private async startRtpSource(session: JobSession, stream: StreamConfig, source: RtpSourceConfig): Promise<void> {
    const receiver = await RtpReceiver.start({
      config: source,
      ...(stream.alias === undefined ? { aliasTemplate: stream.alias_template } : { alias: stream.alias }),
      host: {
        openStream: async (request) => {
          await session.addStream({
            alias: request.alias,
            source: request.source,
            inputSampleRateHz: request.sampleRateHz,
            inputChannels: request.channels,
            output: stream.output,
            delivery: stream.delivery,
          });
        },
        endStream: async (alias) => {
          await session.endStream(alias);
        },
      },
      logger: this.options.logger.child({ component: 'rtp', job: session.name, listen: source.listen }),
      clock: this.clock,
      statsIntervalMs: this.options.config.service.stats_interval_ms,
    });
    this.rtpReceivers.push(receiver);
  }

  /** Resolves on shutdown, on a fatal error, or once every source has ended on its own. */
  private async waitForEnd(): Promise<void> {
    const shutdownRequested = new Promise<void>((resolve) => {
      this.shutdownController.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    // An RTP receiver ends only when its socket fails; until then it may open more aliases.
    const sourcesEnded = Promise.all([
      ...this.sessions.map((session) => session.sourcesEnded()),
      ...this.rtpReceivers.map((receiver) => receiver.closed),
    ]).then(() => {
      this.log.info('every source has ended');
    });
    await Promise.race([shutdownRequested, sourcesEnded]);
  }

  /** Ends streams and finalizes jobs within `shutdown_timeout_ms`; returns the exit code. */
  private async stop(): Promise<number> {
    this.phase = 'stopping';
    this.stopStatsTimer();
    const { shutdown_timeout_ms: shutdownTimeoutMs } = this.options.config.service;
    const deadline = AbortSignal.timeout(shutdownTimeoutMs);
    const signal = AbortSignal.any([deadline, this.abortController.signal]);

    const work = Promise.all(
      this.sessions.map(async (session) => {
        try {
          // Closed first, so that no packet opens an alias while the streams end.
          await Promise.all(this.rtpReceivers.map((receiver) => receiver.close()));
          await session.endStreams();
          // Finalizing is tried even after a credential failure: a quota
          // refusal on one stream still lets the job finalize and report.
          await session.finalize(signal);
        } catch (error) {
          if (signal.aborted) {
            return;
          }
          this.log.error({ err: error, job: session.name, jobId: session.jobId }, 'finalizing the job failed');
          this.recordFailure(error);
        }
      }),
    );
    const aborted = new Promise<'aborted'>((resolve) => {
      if (signal.aborted) {
        resolve('aborted');
      }
      signal.addEventListener('abort', () => resolve('aborted'), { once: true });
    });
    const finished = await Promise.race([work.then(() => 'finished' as const), aborted]);
    if (finished === 'aborted') {
      if (deadline.aborted && !this.abortController.signal.aborted) {
        this.log.error({ shutdownTimeoutMs }, 'shutdown did not finish before service.shutdown_timeout_ms');
        this.abort('shutdown timed out');
      }
      this.recordFailure(new AgentError('ERR_SHUTDOWN', 'shutdown was cut short; some jobs are not finalized'));
    }
    this.phase = 'stopped';
    const code = this.exitCode();
    this.log.info({ exitCode: code, jobs: this.summaries() }, 'agent stopped');
    return code;
  }

  private onFatal(error: StreamClosedError): void {
    this.log.fatal(
      { err: error, closeCode: error.closeCode, statusCode: error.statusCode },
      'credentials, permissions or quota were refused; stopping the agent',
    );
    this.fatalError = new AgentError('ERR_CREDENTIALS', error.message, { cause: error });
    this.shutdown('fatal stream error');
  }

  private recordFailure(error: unknown): void {
    if (this.fatalError !== undefined) {
      return;
    }
    if (error instanceof AgentError) {
      this.fatalError = error;
    } else {
      this.fatalError = new AgentError('ERR_INTERNAL', (error as Error)?.message ?? String(error), { cause: error });
    }
    if (!(error instanceof JobsApiError && error.statusCode === undefined)) {
      this.log.error({ err: error }, 'agent failed');
    }
  }

  private exitCode(): number {
    const error = this.fatalError;
    if (error === undefined) {
      return 0;
    }
    if (error.code === 'ERR_CREDENTIALS' || error.code === 'ERR_CONFIG_INVALID') {
      return EXIT_CONFIG;
    }
    if (error instanceof JobsApiError && (error.statusCode === 401 || error.statusCode === 403)) {
      return EXIT_CONFIG;
    }
    return EXIT_FAILURE;
  }

  private startStatsTimer(): void {
    const intervalMs = this.options.config.service.stats_interval_ms;
    const tick = (): void => {
      for (const session of this.sessions) {
        for (const summary of session.summary().aliases) {
          this.log.info({ job: session.name, jobId: session.jobId, ...summary }, 'stream stats');
        }
      }
      this.statsTimer = this.clock.setTimeout(tick, intervalMs);
      this.statsTimer.unref();
    };
    this.statsTimer = this.clock.setTimeout(tick, intervalMs);
    this.statsTimer.unref();
  }

  private stopStatsTimer(): void {
    if (this.statsTimer !== undefined) {
      this.clock.clearTimeout(this.statsTimer);
      this.statsTimer = undefined;
    }
  }
}

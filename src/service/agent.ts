import { loadResamplerLibrary } from '../audio/resampler.ts';
import { systemClock, type Clock } from '../clock.ts';
import { loadConfig } from '../config/load-config.ts';
import type { AgentConfig } from '../config/types.ts';
import { AgentError, EXIT_CONFIG, JobsApiError, type StreamClosedError } from '../errors.ts';
import type { JobSummary } from '../jobs/job-session.ts';
import { JobsClient } from '../jobs/jobs-client.ts';
import type { Logger } from '../logger.ts';
import { AgentMetrics } from './agent-metrics.ts';
import type { AgentPhase, AgentSnapshot } from './agent-snapshot.ts';
import { JobFleet } from './job-fleet.ts';
import { MetricsServer } from './metrics-server.ts';
import { readBootId, recoverOrphanedJobs } from './orphan-recovery.ts';
import { planReload } from './reload-plan.ts';
import { StateFile } from './state-file.ts';
import { SystemdNotifier } from './systemd-notifier.ts';

/*
 * Phases of the agent:
 *
 *   starting --jobs created, streams started--> running <--SIGHUP--> reloading
 *       |                                          |
 *       +-------- error, signal or sources end ----+--> stopping --> stopped
 *
 * A reload requested while starting runs once the agent is running; one
 * requested while stopping is ignored.
 */

export interface AgentOptions {
  config: AgentConfig;
  logger: Logger;
  version: string;
  /** Where results go when `service.results_dir` is not set. */
  resultsOutput?: NodeJS.WritableStream;
  clock?: Clock;
  /** Sends sd_notify messages; built from `process.env` when omitted. */
  notifier?: SystemdNotifier;
}

/** Exit code for failures other than configuration: the service manager may restart the agent. */
export const EXIT_FAILURE = 1;

/**
 * The agent's main job: creates every configured job, streams every alias,
 * applies config reloads, and on shutdown (or once every finite source has
 * ended) ends the streams, finalizes the jobs and writes their results.
 * Around that it keeps the state file for crash recovery, serves metrics
 * and reports its state to systemd.
 */
export class Agent {
  private readonly options: AgentOptions;
  private config: AgentConfig;
  private readonly log: Logger;
  private readonly client: JobsClient;
  private readonly clock: Clock;
  private readonly notifier: SystemdNotifier;
  private readonly fleet: JobFleet;
  private readonly startedAtMs = Date.now();
  private phase: AgentPhase = 'starting';
  private readonly shutdownController = new AbortController();
  private readonly abortController = new AbortController();
  private fatalError: AgentError | undefined;
  private statsTimer: NodeJS.Timeout | undefined;
  private metricsServer: MetricsServer | undefined;
  private stateFile: StateFile | undefined;
  private reloadChain: Promise<unknown> = Promise.resolve();
  private reloadRequestedWhileStarting = false;
  /** Count of applied reloads; waitForEnd looks again at the sources when it changes. */
  private reloadGeneration = 0;
  /** Wakes waitForEnd after an applied reload. */
  private wakeWaitForEnd: (() => void) | undefined;

  constructor(options: AgentOptions) {
    this.options = options;
    this.config = options.config;
    this.log = options.logger.child({ component: 'agent' });
    this.clock = options.clock ?? systemClock;
    this.notifier = options.notifier ?? new SystemdNotifier({ logger: options.logger });
    const { api } = options.config;
    this.client = new JobsClient({
      baseUrl: api.base_url,
      accountId: api.account_id,
      apiKey: api.api_key,
      auth: api.auth,
      requestTimeoutMs: api.request_timeout_ms,
      logger: options.logger,
    });
    this.fleet = new JobFleet({
      client: this.client,
      logger: options.logger,
      clock: this.clock,
      version: options.version,
      ...(options.resultsOutput === undefined ? {} : { resultsOutput: options.resultsOutput }),
      settings: () => this.config,
      onFatal: (error) => this.onFatal(error),
      onJobCreated: (job, jobId) =>
        this.recordState(() =>
          this.stateFile?.add({
            job_id: jobId,
            name: job.name,
            base_url: this.config.api.base_url,
            created_at: new Date().toISOString(),
            pid: process.pid,
            ...optionalBootId(),
          }),
        ),
      onJobFinalized: (jobId) => this.recordState(() => this.stateFile?.remove(jobId)),
      onFailure: (error) => this.recordFailure(error),
    });
  }

  /** Runs until every finite source has ended or shutdown() is called; returns the exit code. */
  async run(): Promise<number> {
    const { config } = this;
    this.log.info({ jobs: config.jobs.length, baseUrl: config.api.base_url, configFile: config.file }, 'agent starting');
    this.notifier.startWatchdog();
    this.notifier.status('creating jobs and starting streams');
    try {
      // Loaded before any source opens, so that the first stream does not
      // hold up the others while the WebAssembly module compiles.
      await loadResamplerLibrary();
      await this.startMetricsServer();
      await this.startRecovery();
      for (const job of config.jobs) {
        await this.fleet.start(job, this.shutdownController.signal);
      }
      this.phase = 'running';
      this.startStatsTimer();
      void this.notifyWhenReady();
      if (this.reloadRequestedWhileStarting) {
        void this.reload();
      }
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
    this.log.warn({ reason, unfinished: this.fleet.unfinished() }, 'aborting; jobs are left unfinalized');
    this.abortController.abort(new Error(reason));
    this.fleet.abort(reason);
  }

  /**
   * Reloads the config: from `next`, or from the config file when omitted.
   * Unchanged streams keep running untouched. An invalid config, or one
   * whose changes cannot apply while running, is rejected with an error
   * log and the running config stays. Resolves with whether it applied.
   */
  reload(next?: AgentConfig): Promise<boolean> {
    if (this.phase === 'starting') {
      this.reloadRequestedWhileStarting = true;
      this.log.info('reload requested during start-up; it runs once every job has started');
      return Promise.resolve(false);
    }
    if (this.phase === 'stopping' || this.phase === 'stopped') {
      this.log.warn({ phase: this.phase }, 'reload requested while stopping; ignored');
      return Promise.resolve(false);
    }
    const result = this.reloadChain.then(() => this.applyReload(next));
    this.reloadChain = result.catch(() => undefined);
    return result;
  }

  get isStopping(): boolean {
    return this.phase === 'stopping' || this.phase === 'stopped';
  }

  /** Address of the metrics endpoint, once it listens. */
  get metricsAddress(): { address: string; port: number } | undefined {
    return this.metricsServer?.address;
  }

  summaries(): JobSummary[] {
    return this.fleet.summaries();
  }

  snapshot(): AgentSnapshot {
    const jobs = this.fleet.snapshot();
    const running = this.phase === 'running' || this.phase === 'reloading';
    return {
      version: this.options.version,
      pid: process.pid,
      phase: this.phase,
      ready: running && jobs.every((job) => job.aliases.every((alias) => alias.ready)),
      startedAt: new Date(this.startedAtMs).toISOString(),
      uptimeSeconds: Math.round((Date.now() - this.startedAtMs) / 1000),
      configFile: this.config.file,
      jobs,
    };
  }

  private async startMetricsServer(): Promise<void> {
    const listen = this.config.service.metrics_listen;
    if (listen === undefined) {
      return;
    }
    const metrics = new AgentMetrics(() => this.snapshot());
    try {
      this.metricsServer = await MetricsServer.start({
        listen,
        metrics,
        takeSnapshot: () => this.snapshot(),
        logger: this.options.logger,
      });
    } catch (error) {
      throw new AgentError(
        'ERR_METRICS_LISTEN',
        `cannot listen on service.metrics_listen ${listen}: ${(error as Error).message}; free the port or change the key`,
        { cause: error },
      );
    }
  }

  /**
   * Reads the state file and finalizes, in the background, the jobs an
   * earlier run left unfinalized. Streaming starts without waiting for it.
   */
  private async startRecovery(): Promise<void> {
    const { service, api } = this.config;
    if (service.state_dir === undefined) {
      return;
    }
    const stateFile = new StateFile(service.state_dir);
    this.stateFile = stateFile;
    let entries;
    try {
      entries = await stateFile.load();
    } catch (error) {
      this.log.error({ err: error, stateFile: stateFile.path }, 'state file unreadable; starting without orphan recovery');
      return;
    }
    if (entries.length === 0) {
      return;
    }
    this.fleet.track(
      recoverOrphanedJobs({
        stateFile,
        entries,
        client: this.client,
        baseUrl: api.base_url,
        finalize: service.finalize_orphaned_jobs,
        finalizeTimeoutMs: service.finalize_timeout_ms,
        resultsDir: service.results_dir,
        logger: this.options.logger,
        signal: this.abortController.signal,
      }).then(() => undefined),
    );
  }

  /** Runs a state file update; a failure is logged, because streaming matters more than recovery. */
  private async recordState(update: () => Promise<void> | undefined): Promise<void> {
    try {
      await update();
    } catch (error) {
      this.log.error({ err: error }, 'updating the state file failed; a crash now would leave this job unrecovered');
    }
  }

  /** Sends READY=1 once every stream is open or retrying; see isAliasReady. */
  private async notifyWhenReady(): Promise<void> {
    const signal = this.shutdownController.signal;
    await new Promise<void>((resolve) => {
      let unsubscribe = (): void => undefined;
      const finish = (): void => {
        unsubscribe();
        signal.removeEventListener('abort', finish);
        resolve();
      };
      const check = (): void => {
        if (this.snapshot().ready) {
          finish();
        }
      };
      unsubscribe = this.fleet.onStreamStateChange(check);
      signal.addEventListener('abort', finish, { once: true });
      check();
    });
    if (signal.aborted) {
      return;
    }
    const aliases = this.fleet.aliasCount();
    this.notifier.ready(`streaming ${aliases} aliases in ${this.fleet.size} jobs`);
    this.log.info({ jobs: this.fleet.size, aliases }, 'agent ready');
  }

  private async applyReload(next: AgentConfig | undefined): Promise<boolean> {
    if (this.isStopping) {
      return false;
    }
    const file = this.config.file;
    this.phase = 'reloading';
    this.notifier.reloading();
    this.log.info({ configFile: file }, 'reloading config');
    try {
      let loaded: AgentConfig;
      try {
        if (next === undefined && file === undefined) {
          throw new AgentError('ERR_CONFIG_INVALID', 'the running config came from no file, so there is nothing to reload');
        }
        loaded = next ?? (await loadConfig(file as string));
      } catch (error) {
        this.log.error({ err: error, configFile: file }, 'config reload rejected; the running config stays');
        return false;
      }
      const plan = planReload(this.config, loaded, { usedAliases: (name) => this.fleet.usedAliases(name) });
      if (plan.problems.length > 0) {
        this.log.error({ configFile: file, problems: plan.problems }, 'config reload rejected; the running config stays');
        return false;
      }
      if (plan.needsRestart.length > 0) {
        this.log.warn({ keys: plan.needsRestart }, 'changed settings take effect only after a restart; their running values stay');
      }
      // Settings bound at start-up keep their running values.
      this.config = {
        ...loaded,
        api: this.config.api,
        service: {
          ...loaded.service,
          metrics_listen: this.config.service.metrics_listen,
          state_dir: this.config.service.state_dir,
          log_level: this.config.service.log_level,
        },
      };
      await this.fleet.applyPlan(plan, { start: this.shutdownController.signal, finalize: this.abortController.signal });
      this.log.info(
        { configFile: file, changes: plan.jobs.map((change) => `${change.action} ${change.name}`) },
        plan.jobs.length === 0 ? 'config reloaded; no job or stream changed' : 'config reloaded',
      );
      this.reloadGeneration += 1;
      this.wakeWaitForEnd?.();
      return true;
    } finally {
      if (this.phase === 'reloading') {
        this.phase = 'running';
        this.notifier.ready('running');
      }
    }
  }

  /** Resolves on shutdown, on a fatal error, or once every source has ended on its own. */
  private async waitForEnd(): Promise<void> {
    const shutdownRequested = new Promise<'shutdown'>((resolve) => {
      this.shutdownController.signal.addEventListener('abort', () => resolve('shutdown'), { once: true });
    });
    for (;;) {
      const generation = this.reloadGeneration;
      // An RTP receiver ends only when its socket fails; until then it may open more aliases.
      const sourcesEnded = this.fleet.sourcesEnded().then(() => 'ended' as const);
      const reloaded = new Promise<'reloaded'>((resolve) => {
        this.wakeWaitForEnd = () => resolve('reloaded');
      });
      const event = await Promise.race([shutdownRequested, sourcesEnded, reloaded]);
      if (event === 'shutdown') {
        return;
      }
      if (event === 'ended') {
        // A reload in progress may add streams; the sources count as ended only when none did.
        await this.reloadChain;
        if (generation === this.reloadGeneration && !this.shutdownController.signal.aborted) {
          this.log.info('every source has ended');
          return;
        }
      }
    }
  }

  /** Ends streams and finalizes jobs within `shutdown_timeout_ms`; returns the exit code. */
  private async stop(): Promise<number> {
    this.phase = 'stopping';
    this.notifier.stopping();
    this.stopStatsTimer();
    const { shutdown_timeout_ms: shutdownTimeoutMs } = this.config.service;
    const deadline = AbortSignal.timeout(shutdownTimeoutMs);
    const signal = AbortSignal.any([deadline, this.abortController.signal]);

    const work = (async () => {
      await this.reloadChain;
      await this.fleet.endAndFinalize(signal);
    })();
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
    await this.metricsServer?.close();
    this.notifier.close();
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
    const tick = (): void => {
      this.fleet.logStreamStats();
      this.statsTimer = this.clock.setTimeout(tick, this.config.service.stats_interval_ms);
      this.statsTimer.unref();
    };
    this.statsTimer = this.clock.setTimeout(tick, this.config.service.stats_interval_ms);
    this.statsTimer.unref();
  }

  private stopStatsTimer(): void {
    if (this.statsTimer !== undefined) {
      this.clock.clearTimeout(this.statsTimer);
      this.statsTimer = undefined;
    }
  }
}

function optionalBootId(): { boot_id?: string } {
  const bootId = readBootId();
  return bootId === undefined ? {} : { boot_id: bootId };
}

/**
 * The agent's running jobs, one JobRunner per configured job name: starts
 * them, applies a reload's job changes, and ends and finalizes them. Jobs
 * that a reload removes finish in the background and stay listed for the
 * exit summary.
 */
import type { Clock } from '../clock.ts';
import type { AgentConfig, JobConfig } from '../config/types.ts';
import type { StreamClosedError } from '../errors.ts';
import type { AliasSummary } from '../jobs/alias-stream.ts';
import type { JobSummary } from '../jobs/job-session.ts';
import type { JobsClient } from '../jobs/jobs-client.ts';
import type { Logger } from '../logger.ts';
import type { JobSnapshot } from './agent-snapshot.ts';
import { JobRunner } from './job-runner.ts';
import type { ReloadPlan } from './reload-plan.ts';

/** Jobs with more aliases than this log one aggregated stats line instead of one per alias. */
const STATS_LINES_PER_JOB = 20;

/** Aliases named in the aggregated stats line, of those that lost audio. */
const STATS_LOSING_ALIASES_LISTED = 10;

export interface JobFleetOptions {
  client: JobsClient;
  logger: Logger;
  clock: Clock;
  version: string;
  resultsOutput?: NodeJS.WritableStream;
  /** Settings of the running config; read whenever a job starts, so that a reload applies to later jobs. */
  settings: () => Pick<AgentConfig, 'service'>;
  onFatal: (error: StreamClosedError) => void;
  /** A job was created on the server; it must be recorded for crash recovery. */
  onJobCreated: (job: JobConfig, jobId: string) => Promise<void>;
  onJobFinalized: (jobId: string) => Promise<void>;
  /** Finalizing a job failed, which the agent's exit code must report. */
  onFailure: (error: unknown) => void;
}

export class JobFleet {
  private readonly options: JobFleetOptions;
  private readonly log: Logger;
  private readonly runners = new Map<string, JobRunner>();
  /** Runners of jobs removed or replaced by a reload, kept for the exit summary. */
  private readonly retired: JobRunner[] = [];
  /** Finalizations of removed or replaced jobs, and other work that runs beside streaming. */
  private readonly backgroundWork = new Set<Promise<void>>();

  constructor(options: JobFleetOptions) {
    this.options = options;
    this.log = options.logger.child({ component: 'agent' });
  }

  get size(): number {
    return this.runners.size;
  }

  /** Aliases streaming now or earlier in the job named `name`. */
  usedAliases(name: string): ReadonlySet<string> {
    return new Set(this.runners.get(name)?.session.aliases ?? []);
  }

  /** Creates a job and starts its streams; the runner is registered first, so that shutdown finds it. */
  async start(job: JobConfig, signal: AbortSignal): Promise<JobRunner> {
    const runner = this.createRunner(job);
    this.runners.set(job.name, runner);
    await runner.start(signal);
    return runner;
  }

  /**
   * Applies the job changes of a reload in order. A job that fails to start
   * is logged and left out, so the other changes still apply.
   */
  async applyPlan(plan: ReloadPlan, signals: { start: AbortSignal; finalize: AbortSignal }): Promise<void> {
    for (const change of plan.jobs) {
      switch (change.action) {
        case 'remove':
          await this.retire(change.name, signals.finalize);
          break;
        case 'replace':
          await this.retire(change.name, signals.finalize);
          await this.startAfterReload(change.config, signals.start);
          break;
        case 'add':
          await this.startAfterReload(change.config, signals.start);
          break;
        case 'update':
          await this.runners.get(change.name)?.applyStreamChanges(change.config, change.streams);
          break;
      }
    }
  }

  /** Runs `work` beside streaming; endAndFinalize() waits for it. */
  track(work: Promise<void>): void {
    this.backgroundWork.add(work);
    void work.finally(() => this.backgroundWork.delete(work));
  }

  /** Resolves once every source of every running job has ended on its own. */
  async sourcesEnded(): Promise<void> {
    await Promise.all([...this.runners.values()].map((runner) => runner.sourcesEnded()));
  }

  /** True when every stream of every running job is ready; see isAliasReady. */
  isReady(): boolean {
    return [...this.runners.values()].every((runner) => runner.isReady());
  }

  /** Calls `listener` on every stream state change of the jobs running now; returns a function that removes it. */
  onStreamStateChange(listener: () => void): () => void {
    const unsubscribers = [...this.runners.values()].map((runner) => runner.onStreamStateChange(listener));
    return () => {
      for (const unsubscribe of unsubscribers) {
        unsubscribe();
      }
    };
  }

  aliasCount(): number {
    return [...this.runners.values()].reduce((sum, runner) => sum + runner.session.aliases.length, 0);
  }

  /** Ends every stream with end-of-stream, finalizes every job, and waits for the background work. */
  async endAndFinalize(signal: AbortSignal): Promise<void> {
    await Promise.all([
      ...[...this.runners.values()].map(async (runner) => {
        try {
          await runner.endStreams();
        } catch (error) {
          this.log.error({ err: error, job: runner.name, jobId: runner.jobId }, 'ending the streams failed');
        }
        // Finalizing is tried even after a credential failure: a quota
        // refusal on one stream still lets the job finalize and report.
        await this.finalize(runner, signal);
      }),
      ...this.backgroundWork,
    ]);
  }

  /** Closes every socket and stream at once, without end-of-stream. */
  abort(reason: string): void {
    for (const runner of this.allRunners()) {
      runner.abort(reason);
    }
  }

  /** Jobs with aliases not closed yet, for the log line of an interrupted shutdown. */
  unfinished(): Array<{ job: string; jobId: string | undefined; aliases: string[] }> {
    return this.allRunners().map((runner) => ({
      job: runner.name,
      jobId: runner.jobId,
      aliases: runner.session.unfinishedAliases(),
    }));
  }

  summaries(): JobSummary[] {
    return this.allRunners().map((runner) => runner.session.summary());
  }

  /**
   * Logs one `stream stats` line per alias of the jobs running now. A job
   * with more than STATS_LINES_PER_JOB aliases logs one `job stream stats`
   * line with the totals and the aliases that lost audio instead, and its
   * per-alias lines at debug level: at 1000 streams the per-alias lines
   * would be 100 a second.
   */
  logStreamStats(): void {
    for (const runner of this.runners.values()) {
      const aliases = runner.session.summary().aliases;
      const fields = { job: runner.name, jobId: runner.jobId };
      if (aliases.length <= STATS_LINES_PER_JOB) {
        for (const summary of aliases) {
          this.log.info({ ...fields, ...summary }, 'stream stats');
        }
        continue;
      }
      if (this.log.isLevelEnabled('debug')) {
        for (const summary of aliases) {
          this.log.debug({ ...fields, ...summary }, 'stream stats');
        }
      }
      this.log.info({ ...fields, ...aggregateStreamStats(aliases) }, 'job stream stats');
    }
  }

  /** Snapshots of the jobs running now. */
  snapshot(): JobSnapshot[] {
    return [...this.runners.values()].map((runner) => runner.snapshot());
  }

  private allRunners(): JobRunner[] {
    return [...this.retired, ...this.runners.values()];
  }

  private createRunner(job: JobConfig): JobRunner {
    const { service } = this.options.settings();
    return new JobRunner({
      job,
      client: this.options.client,
      logger: this.options.logger,
      clock: this.options.clock,
      version: this.options.version,
      resultsDir: service.results_dir,
      finalizeTimeoutMs: service.finalize_timeout_ms,
      statsIntervalMs: service.stats_interval_ms,
      onFatal: this.options.onFatal,
      onCreated: (jobId) => this.options.onJobCreated(job, jobId),
      onFinalized: this.options.onJobFinalized,
      ...(this.options.resultsOutput === undefined ? {} : { resultsOutput: this.options.resultsOutput }),
    });
  }

  /** Ends a job's streams now and finalizes it in the background. */
  private async retire(name: string, signal: AbortSignal): Promise<void> {
    const runner = this.runners.get(name);
    if (runner === undefined) {
      return;
    }
    this.runners.delete(name);
    this.retired.push(runner);
    this.log.info({ job: name, jobId: runner.jobId }, 'job removed by reload; ending its streams and finalizing it');
    await runner.endStreams();
    this.track(this.finalize(runner, signal));
  }

  private async startAfterReload(job: JobConfig, signal: AbortSignal): Promise<void> {
    try {
      const runner = await this.start(job, signal);
      this.log.info({ job: job.name, jobId: runner.jobId }, 'job added by reload');
    } catch (error) {
      this.log.error({ err: error, job: job.name }, 'starting a job added by reload failed');
    }
  }

  private async finalize(runner: JobRunner, signal: AbortSignal): Promise<void> {
    try {
      await runner.finalize(signal);
    } catch (error) {
      if (signal.aborted) {
        return;
      }
      this.log.error({ err: error, job: runner.name, jobId: runner.jobId }, 'finalizing the job failed');
      this.options.onFailure(error);
    }
  }
}

/** Totals over the aliases of one job, for the `job stream stats` line, with the aliases that lost audio. */
export function aggregateStreamStats(aliases: AliasSummary[]): Record<string, number | string[]> {
  const totals = { aliases: aliases.length, secondsSent: 0, frames: 0, bytes: 0, droppedMs: 0, lostBytes: 0, reconnects: 0 };
  const losing: string[] = [];
  for (const summary of aliases) {
    totals.secondsSent += summary.secondsSent;
    totals.frames += summary.frames;
    totals.bytes += summary.bytes;
    totals.droppedMs += summary.droppedMs;
    totals.lostBytes += summary.lostBytes;
    totals.reconnects += summary.reconnects;
    if (summary.droppedMs > 0 || summary.lostBytes > 0) {
      losing.push(summary.alias);
    }
  }
  totals.secondsSent = Math.round(totals.secondsSent * 1000) / 1000;
  return {
    ...totals,
    aliasesLosingAudio: losing.length,
    // The first few point to where to look, and the count gives how many there are.
    aliasesLosingAudioFirst: losing.slice(0, STATS_LOSING_ALIASES_LISTED),
  };
}

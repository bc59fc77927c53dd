/**
 * Planning of a config reload: compares the running config with the new
 * one, job by job and stream by stream, and lists the changes that cannot
 * be applied while the agent runs.
 *
 * A job is matched by `name` and a stream by its `alias` (or
 * `alias_template`). A stream whose settings differ in any way is replaced.
 * A job whose `analyses` or `create_body` differ is replaced by a new job,
 * because a job's analyses are fixed when it is created.
 */
import { isDeepStrictEqual } from 'node:util';

import type { AgentConfig, JobConfig, StreamConfig } from '../config/types.ts';

export interface StreamChanges {
  added: StreamConfig[];
  /** Keys of streams to end with end-of-stream. */
  removed: string[];
  /** New settings of streams that keep their alias: the alias continues with the new settings. */
  replaced: StreamConfig[];
  unchanged: string[];
}

export type JobChange =
  | { action: 'add'; name: string; config: JobConfig }
  | { action: 'remove'; name: string }
  | { action: 'replace'; name: string; config: JobConfig }
  | { action: 'update'; name: string; config: JobConfig; streams: StreamChanges };

export interface ReloadPlan {
  jobs: JobChange[];
  /** Changes that make the new config unusable while running; a plan with any is rejected whole. */
  problems: string[];
  /** Settings that changed but take effect only after a restart; the running values stay. */
  needsRestart: string[];
}

/** Running jobs, as far as the plan depends on them. */
export interface RunningJobView {
  /** Aliases this job has streamed, including ended ones, which the API does not let reopen. */
  usedAliases(jobName: string): ReadonlySet<string>;
}

/** Key of a stream within its job: its alias, or its alias template. */
export function streamKey(stream: StreamConfig): string {
  return stream.alias ?? stream.alias_template ?? '';
}

/** Plans the reload from `current` to `next`. */
export function planReload(current: AgentConfig, next: AgentConfig, running: RunningJobView): ReloadPlan {
  const plan: ReloadPlan = { jobs: [], problems: [], needsRestart: [] };

  if (!isDeepStrictEqual(current.api, next.api)) {
    plan.needsRestart.push('api');
  }
  if (current.service.metrics_listen !== next.service.metrics_listen) {
    plan.needsRestart.push('service.metrics_listen');
  }
  if (current.service.state_dir !== next.service.state_dir) {
    plan.needsRestart.push('service.state_dir');
  }
  // Child loggers copy their level when they are created, so a new level would reach new streams only.
  if (current.service.log_level !== next.service.log_level) {
    plan.needsRestart.push('service.log_level');
  }

  const nextByName = new Map(next.jobs.map((job) => [job.name, job]));
  for (const job of current.jobs) {
    if (!nextByName.has(job.name)) {
      plan.jobs.push({ action: 'remove', name: job.name });
    }
  }
  const currentByName = new Map(current.jobs.map((job) => [job.name, job]));
  for (const job of next.jobs) {
    const old = currentByName.get(job.name);
    if (old === undefined) {
      plan.jobs.push({ action: 'add', name: job.name, config: job });
      continue;
    }
    if (!isDeepStrictEqual(old.analyses, job.analyses) || !isDeepStrictEqual(old.create_body, job.create_body)) {
      plan.jobs.push({ action: 'replace', name: job.name, config: job });
      continue;
    }
    const streams = planStreams(old, job, running.usedAliases(job.name), plan.problems);
    if (streams.added.length + streams.removed.length + streams.replaced.length > 0) {
      plan.jobs.push({ action: 'update', name: job.name, config: job, streams });
    }
  }
  return plan;
}

function planStreams(old: JobConfig, next: JobConfig, usedAliases: ReadonlySet<string>, problems: string[]): StreamChanges {
  const changes: StreamChanges = { added: [], removed: [], replaced: [], unchanged: [] };
  const nextByKey = new Map(next.streams.map((stream) => [streamKey(stream), stream]));
  const oldByKey = new Map(old.streams.map((stream) => [streamKey(stream), stream]));

  for (const key of oldByKey.keys()) {
    if (!nextByKey.has(key)) {
      changes.removed.push(key);
    }
  }
  for (const [key, stream] of nextByKey) {
    const previous = oldByKey.get(key);
    if (previous === undefined) {
      if (stream.alias !== undefined && usedAliases.has(stream.alias)) {
        problems.push(
          `job ${next.name}: alias ${stream.alias} has already ended in this run and the API cannot reopen it; ` +
            'give the stream a new alias, or restart the agent to stream it into a new job',
        );
      }
      changes.added.push(stream);
    } else if (isDeepStrictEqual(previous, stream)) {
      changes.unchanged.push(key);
    } else {
      const { output: before } = previous;
      const { output: after } = stream;
      if (before.format !== after.format || before.sample_rate_hz !== after.sample_rate_hz || before.channels !== after.channels) {
        problems.push(
          `job ${next.name}: stream ${key} changes its output from ${describeOutput(before)} to ${describeOutput(after)}, ` +
            'but the server fixes an alias\'s format at its first connection; keep the output, use a new alias, or restart the agent',
        );
      }
      changes.replaced.push(stream);
    }
  }
  return changes;
}

function describeOutput(output: StreamConfig['output']): string {
  return `${output.format} ${output.sample_rate_hz} Hz ${output.channels} ch`;
}

/**
 * Recovery of orphaned jobs: jobs that an earlier run of the agent created
 * and never saw finalized, because it crashed, was killed with SIGKILL or
 * lost power. The state file lists them; recovery finalizes each one,
 * writes its results, and removes it from the file.
 */
import { readFileSync } from 'node:fs';

import { JobsApiError } from '../errors.ts';
import type { JobsClient } from '../jobs/jobs-client.ts';
import type { Logger } from '../logger.ts';
import { writeResultsToDir } from '../jobs/results-file.ts';
import type { StateFile, StateJobEntry } from './state-file.ts';

export interface OrphanRecoveryOptions {
  stateFile: StateFile;
  /** Entries found in the state file at start-up. */
  entries: readonly StateJobEntry[];
  client: JobsClient;
  /** Base URL of the running config; jobs created on another one are left alone. */
  baseUrl: string;
  /** `service.finalize_orphaned_jobs`: finalize orphaned jobs, or only report them. */
  finalize: boolean;
  finalizeTimeoutMs: number;
  resultsDir: string | undefined;
  logger: Logger;
  /** Aborts the recovery, for instance when the agent shuts down first. */
  signal: AbortSignal;
  /** True when another live process has `pid`; tests replace it. */
  isOtherAgentAlive?: (entry: StateJobEntry) => boolean;
}

/** Outcome of the recovery, as job IDs per outcome. */
export interface OrphanRecoveryReport {
  finalized: string[];
  /** Not found on the server: forgotten. */
  missing: string[];
  /** Reported without finalizing (`finalize_orphaned_jobs: false`): forgotten. */
  reported: string[];
  /** Left in the state file: another agent's, another base URL's, or failed. */
  kept: string[];
}

/** Reads the Linux boot ID, which changes at every boot; undefined elsewhere. */
export function readBootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return undefined;
  }
}

/**
 * True when the entry's process still runs in this boot and is not this
 * process. A pid from an earlier boot may belong to anything now, so it
 * counts as dead.
 */
export function isOtherAgentAlive(entry: StateJobEntry): boolean {
  if (entry.pid === process.pid) {
    return false;
  }
  if (entry.boot_id === undefined || entry.boot_id !== readBootId()) {
    return false;
  }
  try {
    process.kill(entry.pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Finalizes every orphaned job concurrently, each bounded by
 * `finalizeTimeoutMs`. Never throws: each failure is logged, and the job
 * stays in the state file for the next start.
 */
export async function recoverOrphanedJobs(options: OrphanRecoveryOptions): Promise<OrphanRecoveryReport> {
  const log = options.logger.child({ component: 'recovery' });
  const report: OrphanRecoveryReport = { finalized: [], missing: [], reported: [], kept: [] };
  const isAlive = options.isOtherAgentAlive ?? isOtherAgentAlive;
  if (options.entries.length > 0) {
    log.info({ jobs: options.entries.length, stateFile: options.stateFile.path }, 'found jobs of an earlier run that were not finalized');
  }

  await Promise.all(
    options.entries.map(async (entry) => {
      const fields = { jobId: entry.job_id, job: entry.name, createdAt: entry.created_at, pid: entry.pid };
      if (isAlive(entry)) {
        log.warn(fields, 'state file lists a job of another running agent; give each agent its own service.state_dir');
        report.kept.push(entry.job_id);
        return;
      }
      if (entry.base_url !== options.baseUrl) {
        log.warn(
          { ...fields, jobBaseUrl: entry.base_url, baseUrl: options.baseUrl },
          'orphaned job was created on another api.base_url; leaving it in the state file',
        );
        report.kept.push(entry.job_id);
        return;
      }
      if (!options.finalize) {
        log.warn(
          { ...fields, hint: `modulate-agent jobs finalize ${entry.job_id}` },
          'orphaned job left unfinalized (service.finalize_orphaned_jobs is false)',
        );
        await forget(options.stateFile, entry, log);
        report.reported.push(entry.job_id);
        return;
      }
      const outcome = await finalizeOrphan(entry, options, log);
      report[outcome].push(entry.job_id);
      if (outcome === 'missing') {
        await forget(options.stateFile, entry, log);
      }
    }),
  );
  return report;
}

async function finalizeOrphan(
  entry: StateJobEntry,
  options: OrphanRecoveryOptions,
  log: Logger,
): Promise<'finalized' | 'missing' | 'kept'> {
  const fields = { jobId: entry.job_id, job: entry.name };
  const signal = AbortSignal.any([options.signal, AbortSignal.timeout(options.finalizeTimeoutMs)]);
  try {
    const patched = await options.client.finalizeJob(entry.job_id, signal);
    log.info({ ...fields, status: patched.status }, 'finalizing orphaned job');
    const job = await options.client.waitForFinalized(entry.job_id, { timeoutMs: options.finalizeTimeoutMs, signal });
    const results = await options.client.getResults(entry.job_id, { signal });
    let resultsFile: string | undefined;
    if (options.resultsDir !== undefined) {
      resultsFile = await writeResultsToDir(options.resultsDir, entry.job_id, results);
    }
    // Forgotten before the log line, so that the line means the recovery of this job is complete.
    await forget(options.stateFile, entry, log);
    log.info(
      {
        ...fields,
        finalizedAt: job.finalized_at,
        results: results.length,
        resultsFile,
        ...(resultsFile === undefined ? { hint: `modulate-agent jobs results ${entry.job_id}` } : {}),
      },
      'orphaned job finalized',
    );
    return 'finalized';
  } catch (error) {
    if (error instanceof JobsApiError && error.statusCode === 404) {
      log.warn(fields, 'orphaned job not found on the server; forgetting it');
      return 'missing';
    }
    const reason = options.signal.aborted ? 'the agent is shutting down' : signal.aborted ? 'timed out' : 'failed';
    log.error(
      { ...fields, err: error, finalizeTimeoutMs: options.finalizeTimeoutMs },
      `finalizing orphaned job ${reason}; it stays in the state file for the next start`,
    );
    return 'kept';
  }
}

async function forget(stateFile: StateFile, entry: StateJobEntry, log: Logger): Promise<void> {
  try {
    await stateFile.remove(entry.job_id);
  } catch (error) {
    log.error({ err: error, jobId: entry.job_id }, 'removing a recovered job from the state file failed');
  }
}

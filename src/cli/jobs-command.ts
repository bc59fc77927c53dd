/**
 * `modulate-agent jobs list | get ID | finalize ID | results ID`: the Jobs
 * API from the command line, for operators who check or clean up jobs by
 * hand. Tables go to standard output, errors to standard error.
 */
import type { Writable } from 'node:stream';

import { createSilentLogger } from '../logger.ts';
import type { Job } from '../jobs/protocol.ts';
import { formatResultLines, writeResultsFile } from '../jobs/results-file.ts';
import { createCommandClient, describeApiFailure, resolveApiSettings, type ApiSettingsArgs } from './api-settings.ts';

export type JobsAction =
  | { action: 'list'; json: boolean; perPage?: number }
  | { action: 'get'; jobId: string; json: boolean }
  | { action: 'finalize'; jobId: string; wait: boolean; timeoutMs: number }
  | { action: 'results'; jobId: string; out?: string };

export interface JobsCommandIo {
  stdout: Writable;
  stderr: Writable;
  env?: NodeJS.ProcessEnv;
}

/** Runs one `jobs` action; returns the exit code. */
export async function runJobsCommand(args: ApiSettingsArgs & JobsAction, io: JobsCommandIo): Promise<number> {
  const jobId = 'jobId' in args ? args.jobId : undefined;
  try {
    const settings = await resolveApiSettings(args, io.env);
    const client = createCommandClient(settings, createSilentLogger());
    switch (args.action) {
      case 'list': {
        const jobs = await client.listJobs(args.perPage === undefined ? {} : { perPage: args.perPage });
        io.stdout.write(args.json ? `${JSON.stringify(jobs, null, 2)}\n` : formatJobTable(jobs));
        return 0;
      }
      case 'get': {
        const job = await client.getJob(args.jobId);
        io.stdout.write(args.json ? `${JSON.stringify(job, null, 2)}\n` : formatJobDetails(job));
        return 0;
      }
      case 'finalize': {
        const patched = await client.finalizeJob(args.jobId);
        io.stderr.write(`job ${patched.job_id}: ${patched.status}\n`);
        if (args.wait && patched.status !== 'finalized') {
          const job = await client.waitForFinalized(args.jobId, { timeoutMs: args.timeoutMs });
          io.stderr.write(`job ${job.job_id}: finalized at ${job.finalized_at ?? 'an unknown time'}\n`);
        }
        return 0;
      }
      case 'results': {
        const results = await client.getResults(args.jobId);
        if (args.out === undefined) {
          io.stdout.write(formatResultLines(args.jobId, results));
        } else {
          await writeResultsFile(args.out, args.jobId, results);
          io.stderr.write(`${results.length} results of job ${args.jobId} written to ${args.out}\n`);
        }
        return 0;
      }
    }
  } catch (error) {
    const failure = describeApiFailure(error, jobId);
    io.stderr.write(`modulate-agent: ${failure.message}\n`);
    return failure.exitCode;
  }
}

/** Formats jobs as an aligned table, newest last as the API lists them. */
export function formatJobTable(jobs: readonly Job[]): string {
  if (jobs.length === 0) {
    return 'no jobs\n';
  }
  const rows = [
    ['JOB ID', 'MODE', 'STATUS', 'CREATED', 'FINALIZED', 'ANALYSES', 'STREAMS'],
    ...jobs.map((job) => [
      job.job_id,
      job.mode,
      job.status,
      job.created_at,
      job.finalized_at ?? '-',
      job.analyses.join(','),
      String(job.streams.length),
    ]),
  ];
  return formatTable(rows);
}

function formatJobDetails(job: Job): string {
  const lines = [
    `job_id:       ${job.job_id}`,
    `mode:         ${job.mode}`,
    `status:       ${job.status}`,
    `analyses:     ${job.analyses.join(', ')}`,
    `created_at:   ${job.created_at}`,
    `finalized_at: ${job.finalized_at ?? '-'}`,
  ];
  if (job.streams.length > 0) {
    lines.push('streams:');
    const rows = [
      ['ALIAS', 'STATE', 'RECEIVED BYTES', 'RECEIVED S'],
      ...job.streams.map((stream) => [
        stream.alias,
        stream.state,
        String(stream.received_bytes),
        (stream.received_ms / 1000).toFixed(1),
      ]),
    ];
    lines.push(...formatTable(rows).trimEnd().split('\n').map((line) => `  ${line}`));
  }
  return `${lines.join('\n')}\n`;
}

/** Pads every column to its widest cell. */
export function formatTable(rows: readonly string[][]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, index) => {
      widths[index] = Math.max(widths[index] ?? 0, cell.length);
    });
  }
  return rows.map((row) => row.map((cell, index) => cell.padEnd(widths[index] ?? 0)).join('  ').trimEnd()).join('\n') + '\n';
}

/**
 * `modulate-agent submit FILE...`: a file-based job from the command line.
 * Creates a job with mode "file", uploads each file as its own batch,
 * finalizes the job after the last batch (the API's rule for manual
 * finalization), waits for `finalized` with a progress line, and writes the
 * results as JSON Lines.
 */
import { readFile, stat } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import type { Writable } from 'node:stream';

import { sleep } from '../clock.ts';
import type { JobsClient, MediaFile } from '../jobs/jobs-client.ts';
import type { CreateJobBody, Job } from '../jobs/protocol.ts';
import { createSilentLogger } from '../logger.ts';
import { EXIT_FAILURE } from '../service/agent.ts';
import { formatResultLines, writeResultsFile } from '../jobs/results-file.ts';
import { CommandError, createCommandClient, describeApiFailure, resolveApiSettings, type ApiSettingsArgs } from './api-settings.ts';
import { AGENT_VERSION } from './version.ts';

export interface SubmitArgs extends ApiSettingsArgs {
  files: string[];
  analyses: string[];
  /** File for the results; standard output when omitted. */
  out?: string;
  /** Deadline for the job to reach `finalized` after the PATCH, in milliseconds. */
  timeoutMs: number;
}

export interface SubmitIo {
  stdout: Writable & { isTTY?: boolean };
  stderr: Writable & { isTTY?: boolean };
  env?: NodeJS.ProcessEnv;
  /** Interval between status polls, in milliseconds. */
  pollIntervalMs?: number;
}

/** Media types of the containers the API takes; anything else is sent as application/octet-stream. */
const CONTENT_TYPES: Record<string, string> = {
  '.wav': 'audio/wav',
  '.flac': 'audio/flac',
  '.ogg': 'audio/ogg',
  '.opus': 'audio/ogg',
  '.mp3': 'audio/mpeg',
  '.m4a': 'audio/mp4',
  '.webm': 'audio/webm',
};

/** Runs the submit command; returns the exit code. */
export async function runSubmitCommand(args: SubmitArgs, io: SubmitIo): Promise<number> {
  let jobId: string | undefined;
  try {
    const files = await readMediaFiles(args.files);
    const settings = await resolveApiSettings(args, io.env);
    const client = createCommandClient(settings, createSilentLogger());
    const progress = new ProgressLine(io.stderr);

    const body: CreateJobBody = {
      mode: 'file',
      analyses: args.analyses,
      finalization_trigger: [{ type: 'manual' }],
      metadata: { agent: `modulate-agent/${AGENT_VERSION}`, submitted_files: files.map((file) => file.name) },
    };
    const job = await client.createJob(body);
    jobId = job.job_id;
    progress.done(`job ${jobId} created (file, ${args.analyses.join(', ')})`);

    for (const [index, file] of files.entries()) {
      progress.update(`uploading ${file.name} (${index + 1}/${files.length}, ${formatBytes(file.data.length)})`);
      await client.uploadMediaFiles(jobId, [file]);
      progress.done(`uploaded ${file.name} (${formatBytes(file.data.length)})`);
    }

    await client.finalizeJob(jobId);
    const finalized = await waitWithProgress(client, jobId, args.timeoutMs, io.pollIntervalMs ?? 500, progress);
    progress.done(`job ${jobId} finalized at ${finalized.finalized_at ?? 'an unknown time'}`);

    const results = await client.getResults(jobId);
    if (args.out === undefined) {
      io.stdout.write(formatResultLines(jobId, results));
    } else {
      await writeResultsFile(args.out, jobId, results);
    }
    progress.done(`${results.length} results${args.out === undefined ? '' : ` written to ${args.out}`}`);
    return 0;
  } catch (error) {
    const failure = describeApiFailure(error, jobId);
    const hint = jobId === undefined ? '' : `; the job is ${jobId} (check it with modulate-agent jobs get ${jobId})`;
    io.stderr.write(`\nmodulate-agent: ${failure.message}${hint}\n`);
    return failure.exitCode;
  }
}

async function readMediaFiles(paths: readonly string[]): Promise<MediaFile[]> {
  const files: MediaFile[] = [];
  for (const path of paths) {
    try {
      const info = await stat(path);
      if (!info.isFile()) {
        throw new CommandError(`${path} is not a file; pass the audio files to submit`, EXIT_FAILURE);
      }
      files.push({
        name: basename(path),
        data: await readFile(path),
        contentType: CONTENT_TYPES[extname(path).toLowerCase()] ?? 'application/octet-stream',
      });
    } catch (error) {
      if (error instanceof CommandError) {
        throw error;
      }
      const code = (error as NodeJS.ErrnoException).code;
      const reason = code === 'ENOENT' ? 'not found' : code === 'EACCES' ? 'permission denied' : (error as Error).message;
      throw new CommandError(`cannot read ${path}: ${reason}; check the path`, EXIT_FAILURE, { cause: error });
    }
  }
  return files;
}

/** Polls the job until it is `finalized`, showing its status and the time waited. */
async function waitWithProgress(
  client: JobsClient,
  jobId: string,
  timeoutMs: number,
  pollIntervalMs: number,
  progress: ProgressLine,
): Promise<Job> {
  const startMs = Date.now();
  for (;;) {
    const job = await client.getJob(jobId);
    const waitedS = ((Date.now() - startMs) / 1000).toFixed(1);
    if (job.status === 'finalized') {
      return job;
    }
    progress.update(`job ${jobId}: ${job.status}, waited ${waitedS} s`);
    if (Date.now() - startMs + pollIntervalMs > timeoutMs) {
      throw new CommandError(
        `job ${jobId} is still "${job.status}" after ${timeoutMs} ms; raise --timeout-ms, or fetch the results later with modulate-agent jobs results ${jobId}`,
        EXIT_FAILURE,
      );
    }
    await sleep(pollIntervalMs);
  }
}

/**
 * One status line on standard error: rewritten in place on a terminal,
 * printed only when its text changes otherwise (logs and pipes).
 */
class ProgressLine {
  private readonly stream: Writable & { isTTY?: boolean };
  private lastText = '';

  constructor(stream: Writable & { isTTY?: boolean }) {
    this.stream = stream;
  }

  update(text: string): void {
    if (this.stream.isTTY === true) {
      this.stream.write(`\r\x1b[2K${text}`);
    } else if (stripCounters(text) !== stripCounters(this.lastText)) {
      this.stream.write(`${text}\n`);
    }
    this.lastText = text;
  }

  done(text: string): void {
    this.stream.write(this.stream.isTTY === true ? `\r\x1b[2K${text}\n` : `${text}\n`);
    this.lastText = '';
  }
}

/** Drops the waited time, so that a pipe gets one line per status, not one per poll. */
function stripCounters(text: string): string {
  return text.replace(/, waited [\d.]+ s$/, '');
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) {
    return `${bytes} B`;
  }
  if (bytes < 1024 * 1024) {
    return `${(bytes / 1024).toFixed(1)} KiB`;
  }
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

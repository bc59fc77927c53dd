import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { Result } from './protocol.ts';

/** Formats results as JSON Lines, each line a Result with the job ID first, as the agent writes them. */
export function formatResultLines(jobId: string, results: readonly Result[]): string {
  const lines = results.map((result) => JSON.stringify({ job_id: jobId, ...result })).join('\n');
  return lines.length > 0 ? `${lines}\n` : '';
}

/**
 * Writes results to `file` through a temporary file and a rename, so that a
 * reader never sees a half-written file. Returns the path written.
 */
export async function writeResultsFile(file: string, jobId: string, results: readonly Result[]): Promise<string> {
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, formatResultLines(jobId, results));
  await rename(temporary, file);
  return file;
}

/** Writes results to `<resultsDir>/<job_id>.jsonl`, the agent's results layout. Returns the path written. */
export async function writeResultsToDir(resultsDir: string, jobId: string, results: readonly Result[]): Promise<string> {
  await mkdir(resultsDir, { recursive: true });
  return writeResultsFile(join(resultsDir, `${jobId}.jsonl`), jobId, results);
}

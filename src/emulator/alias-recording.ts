/**
 * Storage of the audio an alias received, byte for byte, in memory and
 * optionally on disk: `DIR/<job_id>/<alias>.raw` contains the bytes and
 * `DIR/<job_id>/<alias>.json` a summary (format, byte count, connection count,
 * end of stream).
 *
 * Writes are synchronous on purpose: when the emulator records an event such
 * as `stream_closed`, the files already hold everything up to that point, so
 * tests can read them right away. At the rates of live audio (tens of frames
 * per second per alias) the cost is negligible.
 */
import { closeSync, mkdirSync, openSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../logger.ts';
import type { StreamFormat } from './request-validation.ts';

export interface RecordingSummary {
  job_id: string;
  alias: string;
  audio_format: string;
  sample_rate: number | null;
  num_channels: number | null;
  received_bytes: number;
  connections: number;
  end_of_stream: boolean;
}

export class AliasRecording {
  private readonly chunks: Buffer[] = [];
  private readonly retainAudio: boolean;
  private readonly log: Logger;
  private readonly rawPath: string | undefined;
  private readonly summaryPath: string | undefined;
  private fd: number | undefined;

  constructor(options: { jobId: string; alias: string; recordDir?: string; retainAudio: boolean; log: Logger }) {
    this.retainAudio = options.retainAudio;
    this.log = options.log;
    if (options.recordDir !== undefined) {
      const jobDir = join(options.recordDir, options.jobId);
      this.rawPath = join(jobDir, `${options.alias}.raw`);
      this.summaryPath = join(jobDir, `${options.alias}.json`);
      try {
        mkdirSync(jobDir, { recursive: true });
        this.fd = openSync(this.rawPath, 'a');
      } catch (err) {
        this.log.error({ err, path: this.rawPath }, 'cannot open recording file; recording to memory only');
      }
    }
  }

  /** Appends received audio exactly as it arrived. */
  append(data: Buffer): void {
    if (this.retainAudio) {
      this.chunks.push(data);
    }
    if (this.fd === undefined) {
      return;
    }
    try {
      let written = 0;
      while (written < data.length) {
        written += writeSync(this.fd, data, written, data.length - written);
      }
    } catch (err) {
      this.log.error({ err, path: this.rawPath }, 'writing recording failed; recording to memory only');
      this.closeFile();
    }
  }

  /** Audio retained in memory; empty when the emulator runs with `retainAudio: false`. */
  audio(): Buffer {
    if (this.chunks.length > 1) {
      const joined = Buffer.concat(this.chunks);
      this.chunks.length = 0;
      this.chunks.push(joined);
    }
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  /** Replaces the summary file, atomically, with the current state of the alias. */
  writeSummary(summary: RecordingSummary): void {
    if (this.summaryPath === undefined) {
      return;
    }
    const temporaryPath = `${this.summaryPath}.tmp`;
    try {
      writeFileSync(temporaryPath, `${JSON.stringify(summary, null, 2)}\n`);
      renameSync(temporaryPath, this.summaryPath);
    } catch (err) {
      this.log.error({ err, path: this.summaryPath }, 'writing recording summary failed');
    }
  }

  /** Closes the raw file; the in-memory copy stays readable. */
  closeFile(): void {
    if (this.fd !== undefined) {
      try {
        closeSync(this.fd);
      } catch (err) {
        this.log.warn({ err, path: this.rawPath }, 'closing recording file failed');
      }
      this.fd = undefined;
    }
  }
}

/** Builds the summary's format fields from an alias's format. */
export function summaryFormatFields(format: StreamFormat): Pick<RecordingSummary, 'audio_format' | 'sample_rate' | 'num_channels'> {
  return {
    audio_format: format.audioFormat,
    sample_rate: format.sampleRateHz ?? null,
    num_channels: format.channels ?? null,
  };
}

/** Characters that may appear in a stored media file name; others become `_`. */
const UNSAFE_FILENAME_CHARACTERS = /[^A-Za-z0-9._-]/g;

/** Writes an uploaded media file to `DIR/<job_id>/media-files/<index>-<name>` and returns the path. */
export function saveMediaFile(recordDir: string, jobId: string, index: number, filename: string, data: Buffer): string {
  const directory = join(recordDir, jobId, 'media-files');
  mkdirSync(directory, { recursive: true });
  // The index keeps names unique, and the leading digits rule out "." and "..".
  const safeName = `${index}-${filename.replace(UNSAFE_FILENAME_CHARACTERS, '_').slice(0, 100)}`;
  const path = join(directory, safeName);
  writeFileSync(path, data);
  return path;
}

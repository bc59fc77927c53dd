/**
 * One job of the emulator: its status, its aliases, its results and the
 * finalization triggers.
 *
 *   active ──PATCH, idle trigger, all_streams_ended──▶ finalizing ──no open stream + finalizeDelayMs──▶ finalized
 *
 * A job never moves back. Entering `finalizing` flushes every alias's pending
 * audio into results and closes open streams with 4004, except those that
 * already sent end-of-stream: they finish with `done` and 1000. The job
 * becomes `finalized` once no stream is open, after `finalizeDelayMs`.
 */
import { randomBytes } from 'node:crypto';
import {
  CloseCode,
  type FinalizationTrigger,
  type Job,
  type JobMode,
  type JobStatus,
  type Result,
} from '../jobs/protocol.ts';
import type { Logger } from '../logger.ts';
import { saveMediaFile } from './alias-recording.ts';
import { AliasStream } from './alias-stream.ts';
import { buildMeasuredResults, buildUnmeasuredResults } from './emulated-results.ts';
import type { EmulatorEventLog } from './emulator-event-log.ts';
import { EmulatorRejection } from './emulator-rejection.ts';
import { looksLikeWav, measureWav, type WavMeasurement } from './media-file-measure.ts';
import { describeStreamFormat, sameStreamFormat, type StreamFormat, type ValidatedJobRequest } from './request-validation.ts';
import type { StreamConnection } from './stream-connection.ts';
import type { WebhookSender } from './webhook-sender.ts';

export interface JobEnvironment {
  log: Logger;
  events: EmulatorEventLog;
  webhooks: WebhookSender;
  resultIntervalMs: number;
  finalizeDelayMs: number;
  recordDir: string | undefined;
  retainAudio: boolean;
}

export type FinalizeReason = FinalizationTrigger['type'];

export interface MediaFileUpload {
  filename: string;
  contentType: string;
  data: Buffer;
}

export interface StoredMediaFile {
  /** Alias that the file's results carry: `file-1`, `file-2`, ... in upload order. */
  alias: string;
  filename: string;
  contentType: string;
  sizeBytes: number;
  /** Duration of a decoded WAV file; null for formats the emulator only counts. */
  durationMs: number | null;
  /** The uploaded bytes; empty when the emulator runs with `retainAudio: false`. */
  data: Buffer;
  /** Path of the saved copy, when the emulator has a record directory. */
  path: string | undefined;
}

/** Outcome of attaching a new connection to an alias. */
export type AttachOutcome =
  | { ok: true; stream: AliasStream }
  | { ok: false; closeCode: number; message: string };

/** Crockford's base32 alphabet, as used by ULIDs. */
const BASE32 = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** Creates a job ID in the style of the API's samples: `job_` and a ULID (48-bit time, 80 random bits). */
export function newJobId(nowMs: number = Date.now()): string {
  let time = '';
  let remaining = nowMs;
  for (let i = 0; i < 10; i += 1) {
    time = (BASE32[remaining % 32] ?? '0') + time;
    remaining = Math.floor(remaining / 32);
  }
  const random = [...randomBytes(16)].map((byte) => BASE32[byte % 32]).join('');
  return `job_${time}${random}`;
}

export class EmulatedJob {
  readonly id: string;
  /** Creation order, for pagination. */
  readonly seq: number;
  readonly mode: JobMode;
  readonly analyses: readonly string[];
  readonly createdAt: string;
  readonly aliases = new Map<string, AliasStream>();
  readonly results: Array<{ seq: number; result: Result }> = [];
  readonly mediaFiles: StoredMediaFile[] = [];

  private currentStatus: JobStatus = 'active';
  private finalizedAt: string | null = null;
  private readonly triggers: FinalizationTrigger[];
  private readonly webhookUrls: string[];
  private readonly declaredStreams: Map<string, StreamFormat>;
  private readonly env: JobEnvironment;
  private readonly log: Logger;
  private resultSeq = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private finalizeTimer: NodeJS.Timeout | undefined;

  constructor(seq: number, request: ValidatedJobRequest, env: JobEnvironment) {
    this.id = newJobId();
    this.seq = seq;
    this.mode = request.mode;
    this.analyses = request.analyses;
    this.triggers = request.triggers;
    this.webhookUrls = request.webhookUrls;
    this.declaredStreams = request.declaredStreams;
    this.createdAt = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    this.env = env;
    this.log = env.log.child({ jobId: this.id });
    this.updateIdleTimer();
  }

  get status(): JobStatus {
    return this.currentStatus;
  }

  toJson(): Job {
    return {
      job_id: this.id,
      mode: this.mode,
      status: this.currentStatus,
      analyses: [...this.analyses],
      created_at: this.createdAt,
      finalized_at: this.finalizedAt,
      streams: [...this.aliases.values()].map((stream) => stream.toJson()),
    };
  }

  /**
   * Returns the rejection of a new connection to `alias` at the upgrade:
   * 409 while another connection uses the alias or after it ended.
   */
  checkAliasAvailable(alias: string): EmulatorRejection | undefined {
    const stream = this.aliases.get(alias);
    if (stream?.endOfStream === true) {
      return new EmulatorRejection(409, 'alias_ended', `alias ${alias} of job ${this.id} has ended with "" and cannot be reopened`);
    }
    if (stream?.connection !== undefined) {
      return new EmulatorRejection(
        409,
        'alias_connected',
        `alias ${alias} of job ${this.id} already has an open connection; close it before connecting again`,
      );
    }
    return undefined;
  }

  /** Attaches an accepted connection to its alias, creating the alias on its first connection. */
  attach(alias: string, format: StreamFormat, connection: StreamConnection): AttachOutcome {
    if (this.currentStatus !== 'active' || this.mode !== 'realtime') {
      return { ok: false, closeCode: CloseCode.JOB_NOT_ACTIVE, message: this.notStreamableMessage() };
    }

    const declared = this.declaredStreams.get(alias);
    if (declared !== undefined && !sameStreamFormat(declared, format)) {
      return {
        ok: false,
        closeCode: CloseCode.INVALID_QUERY,
        message: `alias ${alias} was declared with ${describeStreamFormat(declared)} but the query has ${describeStreamFormat(format)}`,
      };
    }
    let stream = this.aliases.get(alias);
    if (stream !== undefined && !sameStreamFormat(stream.format, format)) {
      return {
        ok: false,
        closeCode: CloseCode.INVALID_QUERY,
        message: `alias ${alias} started with ${describeStreamFormat(stream.format)}; a reconnection must use the same format, not ${describeStreamFormat(format)}`,
      };
    }

    const conflict = this.checkAliasAvailable(alias);
    if (conflict !== undefined) {
      // Checked at the upgrade already; reaching this means two upgrades raced.
      return { ok: false, closeCode: CloseCode.TRY_AGAIN_LATER, message: conflict.message };
    }

    if (stream === undefined) {
      stream = new AliasStream({
        jobId: this.id,
        alias,
        format,
        analyses: this.analyses,
        resultIntervalMs: this.env.resultIntervalMs,
        recordDir: this.env.recordDir,
        retainAudio: this.env.retainAudio,
        log: this.log,
      });
      this.aliases.set(alias, stream);
    }
    stream.connection = connection;
    stream.connections += 1;
    stream.state = 'connected';
    stream.writeSummary();
    this.updateIdleTimer();
    return { ok: true, stream };
  }

  /** Message of the 4004 close for a connection to a job that takes no audio. */
  notStreamableMessage(): string {
    if (this.mode !== 'realtime') {
      return `job ${this.id} is a file job; streams need a job created with mode "realtime"`;
    }
    return `job ${this.id} is ${this.currentStatus} and accepts no more audio`;
  }

  /** Records and measures a validated binary frame of `stream`. */
  receiveAudio(stream: AliasStream, data: Buffer): void {
    this.publish(stream, stream.receive(data));
  }

  /** Handles the client's end-of-stream: flushes results, marks the alias ended, applies `all_streams_ended`. */
  endStream(stream: AliasStream): void {
    this.publish(stream, stream.flush());
    stream.endOfStream = true;
    stream.state = 'ended';
    stream.writeSummary();
    this.env.events.record({ type: 'end_of_stream', jobId: this.id, alias: stream.alias });
    const allEnded = [...this.aliases.values()].every((each) => each.endOfStream);
    if (allEnded && this.triggers.some((trigger) => trigger.type === 'all_streams_ended')) {
      this.requestFinalization('all_streams_ended');
    }
  }

  /** Detaches a closed connection from its alias. */
  detach(stream: AliasStream, connection: StreamConnection): void {
    if (stream.connection !== connection) {
      return;
    }
    stream.connection = undefined;
    if (!stream.endOfStream) {
      stream.state = 'disconnected';
    }
    stream.writeSummary();
    this.updateIdleTimer();
    this.finalizeWhenIdle();
  }

  /** Moves an active job to `finalizing`; a job already finalizing or finalized is left as it is. */
  requestFinalization(reason: FinalizeReason): void {
    if (this.currentStatus !== 'active') {
      return;
    }
    this.clearIdleTimer();
    this.transition('finalizing', reason);
    this.env.events.record({ type: 'finalize_requested', jobId: this.id, detail: reason });
    for (const stream of this.aliases.values()) {
      // Pending audio becomes results first, so that an open stream still
      // receives them before its 4004 close.
      this.publish(stream, stream.flush());
      if (stream.connection !== undefined && !stream.endOfStream) {
        stream.connection.closeWith(CloseCode.JOB_NOT_ACTIVE, 'job finalizing', {
          error: `job ${this.id} is finalizing and accepts no more audio`,
          acceptLateAudio: true,
        });
      }
    }
    this.finalizeWhenIdle();
  }

  /**
   * Adds uploaded files to a file job. Every file is checked before any is
   * kept, so a rejected request adds nothing.
   */
  addMediaFiles(uploads: MediaFileUpload[]): StoredMediaFile[] {
    if (this.mode !== 'file') {
      throw new EmulatorRejection(
        409,
        'wrong_mode',
        `job ${this.id} is a realtime job; media files need a job created with mode "file"`,
      );
    }
    if (this.currentStatus !== 'active') {
      throw new EmulatorRejection(
        409,
        'job_not_active',
        `job ${this.id} is ${this.currentStatus}; media files can only be added while it is active`,
      );
    }
    const measured = uploads.map((upload): WavMeasurement | undefined => {
      if (!looksLikeWav(upload.data)) {
        return undefined;
      }
      try {
        return measureWav(upload.data, this.env.resultIntervalMs);
      } catch (err) {
        throw new EmulatorRejection(
          422,
          'invalid_media_file',
          `file ${JSON.stringify(upload.filename)} has a WAV header but cannot be decoded: ${(err as Error).message}`,
        );
      }
    });

    const stored = uploads.map((upload, index) => {
      const fileNumber = this.mediaFiles.length + 1;
      const alias = `file-${fileNumber}`;
      const measurement = measured[index];
      const path =
        this.env.recordDir === undefined
          ? undefined
          : saveMediaFile(this.env.recordDir, this.id, fileNumber, upload.filename, upload.data);
      const file: StoredMediaFile = {
        alias,
        filename: upload.filename,
        contentType: upload.contentType,
        sizeBytes: upload.data.length,
        durationMs: measurement?.durationMs ?? null,
        data: this.env.retainAudio ? upload.data : Buffer.alloc(0),
        path,
      };
      this.mediaFiles.push(file);
      const results =
        measurement === undefined
          ? buildUnmeasuredResults(alias, this.analyses, {
              audioFormat: upload.contentType,
              receivedBytes: upload.data.length,
              filename: upload.filename,
            })
          : measurement.measurements.flatMap((each) => buildMeasuredResults(alias, this.analyses, each));
      this.publish(undefined, results);
      return file;
    });
    this.env.events.record({ type: 'media_files_added', jobId: this.id, detail: `${stored.length} file(s)` });
    this.log.info({ fileCount: stored.length, sizeBytes: uploads.reduce((sum, each) => sum + each.data.length, 0) }, 'media files added');
    // An upload is activity: the idle trigger counts from the last one.
    this.clearIdleTimer();
    this.updateIdleTimer();
    return stored;
  }

  /** Stops the job's timers and closes its recording files; used when the emulator closes. */
  dispose(): void {
    this.clearIdleTimer();
    if (this.finalizeTimer !== undefined) {
      clearTimeout(this.finalizeTimer);
      this.finalizeTimer = undefined;
    }
    for (const stream of this.aliases.values()) {
      stream.writeSummary();
      stream.recording.closeFile();
    }
  }

  private publish(stream: AliasStream | undefined, results: Result[]): void {
    if (results.length === 0) {
      return;
    }
    for (const result of results) {
      this.resultSeq += 1;
      this.results.push({ seq: this.resultSeq, result });
    }
    this.env.events.record({
      type: 'result_produced',
      jobId: this.id,
      ...(stream === undefined ? {} : { alias: stream.alias }),
      detail: `${results.length} result(s)`,
    });
    stream?.connection?.sendResults(results);
    for (const url of this.webhookUrls) {
      this.env.webhooks.deliver(this.id, url, results);
    }
  }

  private transition(to: JobStatus, reason: string): void {
    const from = this.currentStatus;
    this.currentStatus = to;
    this.log.info({ from, to, reason }, 'job status changed');
  }

  /** Schedules `finalized` once the job is finalizing and no connection is open. */
  private finalizeWhenIdle(): void {
    if (this.currentStatus !== 'finalizing' || this.finalizeTimer !== undefined) {
      return;
    }
    const openStreams = [...this.aliases.values()].filter((stream) => stream.connection !== undefined);
    if (openStreams.length > 0) {
      return;
    }
    this.finalizeTimer = setTimeout(() => this.finalize(), this.env.finalizeDelayMs);
  }

  private finalize(): void {
    this.finalizeTimer = undefined;
    // Audio that arrived while the streams were closing is measured too.
    for (const stream of this.aliases.values()) {
      this.publish(stream, stream.flush());
      stream.recording.closeFile();
      stream.writeSummary();
    }
    this.finalizedAt = new Date().toISOString();
    this.transition('finalized', 'no open streams');
    this.env.events.record({ type: 'job_finalized', jobId: this.id });
  }

  /**
   * Arms the idle trigger while no stream is connected and disarms it while
   * one is. The shortest `idle_seconds` applies when several are given.
   */
  private updateIdleTimer(): void {
    const idleSeconds = this.triggers
      .flatMap((trigger) => (trigger.type === 'idle' ? [trigger.idle_seconds] : []))
      .reduce((shortest, each) => Math.min(shortest, each), Number.POSITIVE_INFINITY);
    if (!Number.isFinite(idleSeconds) || this.currentStatus !== 'active') {
      return;
    }
    const connected = [...this.aliases.values()].some((stream) => stream.connection !== undefined);
    if (connected) {
      this.clearIdleTimer();
      return;
    }
    this.idleTimer ??= setTimeout(() => {
      this.idleTimer = undefined;
      this.requestFinalization('idle');
    }, idleSeconds * 1000);
  }

  private clearIdleTimer(): void {
    if (this.idleTimer !== undefined) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
  }
}

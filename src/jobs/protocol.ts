/**
 * Wire protocol of the Modulate Platform Jobs API, version 0.2.0.
 *
 * The public API page fixes the overview, Basic auth, the job workflow and the
 * paths. Everything else here (body field names, the PATCH body, stream query
 * parameters, message types, close codes) is modeled after Modulate's Velma-2
 * streaming endpoints or chosen by this project. Every such detail lives in
 * this module so that adapting to the final API changes this file or the YAML
 * config, and nothing else. The emulator implements the same module strictly.
 */

/** Vendor media type of every JSON response; also sent as `Accept` and as the `Content-Type` of JSON bodies. */
export const MEDIA_TYPE = 'application/vnd.modulate.v0+json';

export const DEFAULT_BASE_URL = 'https://api.modulate.ai';

export type JobStatus = 'active' | 'finalizing' | 'finalized';
export type JobMode = 'realtime' | 'file';

/** Allowed moves of a job's status; a job never moves back. */
export const JOB_STATUS_ORDER: readonly JobStatus[] = ['active', 'finalizing', 'finalized'];

// ---------------------------------------------------------------------------
// Paths. Per-job paths use the singular `job`, the collection the plural.

export const JOBS_PATH = '/jobs';

export function jobPath(jobId: string): string {
  return `/job/${encodeURIComponent(jobId)}`;
}

export function resultsPath(jobId: string): string {
  return `${jobPath(jobId)}/results`;
}

export function mediaFilesPath(jobId: string): string {
  return `${jobPath(jobId)}/sources/media-files`;
}

export function streamPath(jobId: string, alias: string): string {
  return `${jobPath(jobId)}/sources/streams/${encodeURIComponent(alias)}`;
}

/** Name of the multipart part that carries one media file. */
export const MEDIA_FILE_PART = 'file';

/** Body of `PATCH /job/{id}` that finalizes a job. */
export const FINALIZE_BODY = { status: 'finalizing' } as const;

/** `per_page` bounds of paginated listings. */
export const PER_PAGE_MIN = 1;
export const PER_PAGE_MAX = 100;
export const PER_PAGE_DEFAULT = 20;

// ---------------------------------------------------------------------------
// Job request and response bodies.

export type FinalizationTrigger =
  | { type: 'manual' }
  | { type: 'idle'; idle_seconds: number }
  | { type: 'all_streams_ended' };

export interface StreamDeclaration {
  alias: string;
  audio_format: string;
  sample_rate?: number;
  num_channels?: number;
}

export interface CreateJobBody {
  mode: JobMode;
  analyses: string[];
  streams?: StreamDeclaration[];
  finalization_trigger?: FinalizationTrigger[];
  results_deliveries?: Array<{ type: 'webhook'; url: string }>;
  metadata?: Record<string, unknown>;
  [extra: string]: unknown;
}

export type StreamState = 'connected' | 'disconnected' | 'ended';

export interface JobStreamInfo {
  alias: string;
  state: StreamState;
  received_bytes: number;
  received_ms: number;
}

export interface Job {
  job_id: string;
  mode: JobMode;
  status: JobStatus;
  analyses: string[];
  created_at: string;
  finalized_at: string | null;
  streams: JobStreamInfo[];
}

export interface Result {
  alias: string;
  analysis: string;
  start_ms: number;
  duration_ms: number;
  data: Record<string, unknown>;
}

export interface Page<T> {
  meta: { total_count: number; per_page: number };
  links: { prev?: string | null; self: string; next?: string | null };
  data: T[];
}

/** Body of a webhook delivery. */
export interface WebhookDelivery {
  job_id: string;
  results: Result[];
}

// ---------------------------------------------------------------------------
// Errors.

/** Error body the Jobs API is modeled to send. */
export interface ErrorBody {
  error: { code: string; message: string };
}

/** Extracts code and message from an error body, including FastAPI's `{"detail": ...}` shape. */
export function parseErrorBody(body: unknown): { code?: string; message?: string } {
  if (typeof body !== 'object' || body === null) {
    return {};
  }
  const record = body as Record<string, unknown>;
  const error = record['error'];
  if (typeof error === 'object' && error !== null) {
    const code = (error as Record<string, unknown>)['code'];
    const message = (error as Record<string, unknown>)['message'];
    return {
      ...(typeof code === 'string' ? { code } : {}),
      ...(typeof message === 'string' ? { message } : {}),
    };
  }
  const detail = record['detail'];
  if (typeof detail === 'string') {
    return { message: detail };
  }
  if (detail !== undefined) {
    return { message: JSON.stringify(detail) };
  }
  return {};
}

/** Parses a `Retry-After` header given in seconds (or as an HTTP date) into milliseconds. */
export function parseRetryAfterMs(header: string | null | undefined, nowMs: number = Date.now()): number | undefined {
  if (header === null || header === undefined || header.trim() === '') {
    return undefined;
  }
  const seconds = Number(header.trim());
  if (Number.isFinite(seconds) && seconds >= 0) {
    return Math.round(seconds * 1000);
  }
  const dateMs = Date.parse(header);
  if (Number.isFinite(dateMs)) {
    return Math.max(0, dateMs - nowMs);
  }
  return undefined;
}

/** True for statuses after which repeating the same request can succeed. */
export function isRetryableHttpStatus(status: number): boolean {
  return status === 429 || status >= 500;
}

// ---------------------------------------------------------------------------
// Realtime streams.

/** 1 to 64 characters of `A-Z a-z 0-9 . _ -`. */
export const ALIAS_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

/** Sample rates a realtime stream accepts for raw PCM formats, in Hz. */
export const STREAM_SAMPLE_RATES_HZ = [8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000] as const;

export const STREAM_MAX_CHANNELS = 8;

/** Raw formats: the query must carry `sample_rate` and `num_channels`. Value: bytes per sample. */
export const RAW_AUDIO_FORMATS = {
  s16le: 2,
  s16be: 2,
  f32le: 4,
  mulaw: 1,
  alaw: 1,
} as const;

export type RawAudioFormat = keyof typeof RAW_AUDIO_FORMATS;

/** Container formats carry their own rate and channel count. */
export const CONTAINER_AUDIO_FORMATS = ['ogg', 'wav', 'flac'] as const;

export type ContainerAudioFormat = (typeof CONTAINER_AUDIO_FORMATS)[number];
export type StreamAudioFormat = RawAudioFormat | ContainerAudioFormat;

export function isRawAudioFormat(value: string): value is RawAudioFormat {
  return Object.hasOwn(RAW_AUDIO_FORMATS, value);
}

export function isContainerAudioFormat(value: string): value is ContainerAudioFormat {
  return (CONTAINER_AUDIO_FORMATS as readonly string[]).includes(value);
}

export interface StreamQuery {
  audioFormat: StreamAudioFormat;
  sampleRateHz?: number;
  channels?: number;
}

/** Builds the query parameters of a stream upgrade. */
export function buildStreamQuery(query: StreamQuery): URLSearchParams {
  const params = new URLSearchParams({ audio_format: query.audioFormat });
  if (isRawAudioFormat(query.audioFormat)) {
    params.set('sample_rate', String(query.sampleRateHz));
    params.set('num_channels', String(query.channels));
  }
  return params;
}

/** Query parameter that carries the API key when `auth: query` is configured. */
export const API_KEY_QUERY_PARAM = 'api_key';

/** The client ends an alias's stream with an empty text frame. */
export const END_OF_STREAM_TEXT = '';

/** Server idle limit: a connection that sends neither audio nor ping for this long is closed with 1001. */
export const SERVER_IDLE_TIMEOUT_MS = 30_000;

export type ServerMessage =
  | { type: 'result'; result: Result }
  | { type: 'error'; error: string }
  | { type: 'done'; duration_ms: number };

/** Parses a server text frame; returns undefined for anything that is not a known message. */
export function parseServerMessage(text: string): ServerMessage | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) {
    return undefined;
  }
  const message = value as Record<string, unknown>;
  switch (message['type']) {
    case 'result':
      return typeof message['result'] === 'object' && message['result'] !== null
        ? { type: 'result', result: message['result'] as Result }
        : undefined;
    case 'error':
      return { type: 'error', error: String(message['error'] ?? '') };
    case 'done':
      return typeof message['duration_ms'] === 'number'
        ? { type: 'done', duration_ms: message['duration_ms'] }
        : undefined;
    default:
      return undefined;
  }
}

/** WebSocket close codes the server sends, with their meaning. */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  INVALID_QUERY: 1003,
  SERVER_ERROR: 1011,
  TRY_AGAIN_LATER: 1013,
  UNAUTHORIZED: 4001,
  FORMAT_MISMATCH: 4002,
  FORBIDDEN: 4003,
  JOB_NOT_ACTIVE: 4004,
  RATE_LIMITED: 4029,
  CONCURRENCY_LIMIT: 4030,
  USAGE_LIMIT: 4031,
} as const;

/**
 * What the client does after a stream closes or its upgrade is refused.
 * - `done`: the stream ended normally; do not reconnect.
 * - `reconnect`: connect again at once (the first attempt of a backoff).
 * - `backoff`: connect again after an exponential backoff delay.
 * - `stop_stream`: this alias cannot go on (bad format or parameters); other aliases continue.
 * - `stop_job`: the job no longer accepts audio; stop every stream of this job.
 * - `stop_agent`: credentials, permissions or quota are wrong; stop the agent with exit 78.
 */
export type CloseAction = 'done' | 'reconnect' | 'backoff' | 'stop_stream' | 'stop_job' | 'stop_agent';

/** Maps a WebSocket close code to the client's action. Codes outside the table are treated as transient. */
export function classifyCloseCode(code: number): CloseAction {
  switch (code) {
    case CloseCode.NORMAL:
      return 'done';
    case CloseCode.GOING_AWAY:
      return 'reconnect';
    case CloseCode.INVALID_QUERY:
    case CloseCode.FORMAT_MISMATCH:
      return 'stop_stream';
    case CloseCode.SERVER_ERROR:
    case CloseCode.TRY_AGAIN_LATER:
    case CloseCode.RATE_LIMITED:
    case CloseCode.CONCURRENCY_LIMIT:
      return 'backoff';
    case CloseCode.UNAUTHORIZED:
    case CloseCode.FORBIDDEN:
    case CloseCode.USAGE_LIMIT:
      return 'stop_agent';
    case CloseCode.JOB_NOT_ACTIVE:
      return 'stop_job';
    default:
      // 1005 (no status) and 1006 (abnormal closure, no close frame) come
      // from network faults, so they and unknown codes get a backoff.
      return 'backoff';
  }
}

/** Maps the HTTP status of a refused stream upgrade to the client's action. */
export function classifyUpgradeStatus(status: number): CloseAction {
  if (status === 401 || status === 403) {
    return 'stop_agent';
  }
  if (status === 404) {
    return 'stop_job';
  }
  if (status === 409) {
    // A second connection on the alias (the previous one is still closing on
    // the server) or an alias that has already ended. Retrying resolves the
    // first case; the stream's own state rules out the second.
    return 'backoff';
  }
  if (status === 400 || status === 422) {
    return 'stop_stream';
  }
  return 'backoff';
}

/**
 * Error classes shared by every part of the agent. Each error carries a
 * stable `code` that logs and tests match on, and says whether retrying the
 * failed operation can help.
 */

/** Exit code for configuration errors, from sysexits.h (EX_CONFIG). */
export const EXIT_CONFIG = 78;

export interface AgentErrorOptions {
  cause?: unknown;
  retryable?: boolean;
}

/** Base class of every error the agent raises on purpose. */
export class AgentError extends Error {
  readonly code: string;
  readonly retryable: boolean;

  constructor(code: string, message: string, options: AgentErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

/** Invalid or unreadable configuration: the operator must change the YAML file or the environment. */
export class ConfigError extends AgentError {
  /** Path of the config file, when the error comes from one. */
  readonly file: string | undefined;
  /** Dotted key path inside the config, such as `jobs[0].streams[1].alias`. */
  readonly keyPath: string | undefined;

  constructor(message: string, options: { file?: string; keyPath?: string; cause?: unknown } = {}) {
    super('ERR_CONFIG_INVALID', message, { cause: options.cause });
    this.file = options.file;
    this.keyPath = options.keyPath;
  }
}

/** A request to the Jobs API that failed with an HTTP status or a network error. */
export class JobsApiError extends AgentError {
  /** HTTP status, or undefined for network errors and timeouts. */
  readonly statusCode: number | undefined;
  /** Error code from the response body, such as `invalid_body`. */
  readonly apiCode: string | undefined;
  /** Delay requested by a `Retry-After` header, in milliseconds. */
  readonly retryAfterMs: number | undefined;
  readonly method: string;
  readonly path: string;

  constructor(
    message: string,
    details: {
      method: string;
      path: string;
      statusCode?: number;
      apiCode?: string;
      retryAfterMs?: number;
      retryable: boolean;
      cause?: unknown;
    },
  ) {
    super('ERR_JOBS_API', message, { cause: details.cause, retryable: details.retryable });
    this.statusCode = details.statusCode;
    this.apiCode = details.apiCode;
    this.retryAfterMs = details.retryAfterMs;
    this.method = details.method;
    this.path = details.path;
  }
}

/** A realtime stream that the server closed, or refused at the upgrade. */
export class StreamClosedError extends AgentError {
  /** WebSocket close code, or undefined when the upgrade was refused. */
  readonly closeCode: number | undefined;
  /** HTTP status of a refused upgrade. */
  readonly statusCode: number | undefined;
  readonly reason: string;

  constructor(
    message: string,
    details: { closeCode?: number; statusCode?: number; reason?: string; retryable: boolean },
  ) {
    super('ERR_STREAM_CLOSED', message, { retryable: details.retryable });
    this.closeCode = details.closeCode;
    this.statusCode = details.statusCode;
    this.reason = details.reason ?? '';
  }
}

/** Audio that cannot be read or converted: an unsupported file, format or parameter. */
export class AudioFormatError extends AgentError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('ERR_AUDIO_FORMAT', message, options);
  }
}

/** A source that failed to start or to keep producing audio. */
export class SourceError extends AgentError {
  constructor(message: string, options: AgentErrorOptions = {}) {
    super('ERR_SOURCE', message, options);
  }
}

import { destination, pino, stdTimeFunctions, type DestinationStream, type Logger } from 'pino';

export type LogFormat = 'json' | 'pretty';
export type { Logger };

export interface LoggerOptions {
  level?: string;
  format?: LogFormat;
  /** Destination for JSON lines; standard output when omitted. */
  destination?: DestinationStream;
  /** File descriptor to write to when no destination is given: 1 (default) or 2. */
  fd?: number;
}

/**
 * Paths that pino replaces with `[redacted]`. Secrets never reach a log line
 * even when a whole config or request object is logged by mistake.
 */
const REDACT_PATHS = [
  'api_key',
  'apiKey',
  '*.api_key',
  '*.apiKey',
  '*.*.api_key',
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
];

/** Creates the root logger. Components derive child loggers with `component`, `jobId` and `alias` fields. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const base = {
    level: options.level ?? 'info',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: undefined,
    timestamp: stdTimeFunctions.isoTime,
  };
  if (options.destination !== undefined) {
    return pino(base, options.destination);
  }
  if (options.format === 'pretty') {
    return pino({
      ...base,
      transport: {
        target: 'pino-pretty',
        options: {
          colorize: process.stdout.isTTY === true,
          translateTime: 'HH:MM:ss.l',
          ignore: 'pid,hostname',
          singleLine: true,
          destination: options.fd ?? 1,
        },
      },
    });
  }
  return pino(base, destination({ fd: options.fd ?? 1, sync: false }));
}

/** Creates a logger that drops everything, for library callers and tests that pass none. */
export function createSilentLogger(): Logger {
  return pino({ level: 'silent' });
}

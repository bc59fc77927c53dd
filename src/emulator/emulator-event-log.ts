import { EventEmitter } from 'node:events';

/** Kind of an emulator event: something the emulator observed or did. Tests synchronise on these. */
export type EmulatorEventType =
  | 'job_created'
  | 'job_rejected'
  | 'media_files_added'
  | 'upgrade_rejected'
  | 'stream_open'
  | 'stream_error'
  | 'audio_dropped'
  | 'end_of_stream'
  | 'done_sent'
  | 'stream_closed'
  | 'result_produced'
  | 'finalize_requested'
  | 'job_finalized'
  | 'webhook_delivered'
  | 'webhook_failed'
  | 'webhook_skipped'
  | 'request_rejected'
  | 'fault_applied'
  | 'server_restarted';

export interface EmulatorEvent {
  type: EmulatorEventType;
  jobId?: string;
  alias?: string;
  /** WebSocket close code (`stream_closed`, `stream_error`). */
  code?: number;
  /** HTTP status (`upgrade_rejected`, `request_rejected`, `job_rejected`). */
  status?: number;
  /** Close reason, error text, trigger name or fault action, depending on the type. */
  detail?: string;
  /** True when the emulator closed the stream, false when the client did or the socket broke. */
  byServer?: boolean;
  /** Milliseconds since the emulator started, from a monotonic clock. */
  atMs: number;
}

export interface WaitForOptions {
  /** Only events at this index of `events` or later can match; defaults to 0, so past events match too. */
  fromIndex?: number;
}

/**
 * Ordered in-memory record of emulator events with a way to await one.
 * The log keeps at most `maxEvents` entries and drops the oldest beyond that,
 * so a long-running emulator does not grow without bound.
 */
export class EmulatorEventLog {
  readonly events: EmulatorEvent[] = [];
  private readonly emitter = new EventEmitter();
  private readonly startMs = performance.now();
  private readonly maxEvents: number;

  constructor(maxEvents = 100_000) {
    this.maxEvents = maxEvents;
    // Every pending waitFor adds a listener, and tests may await many at once.
    this.emitter.setMaxListeners(0);
  }

  /** Appends an event stamped with the current time and notifies listeners. */
  record(event: Omit<EmulatorEvent, 'atMs'>): EmulatorEvent {
    const stamped: EmulatorEvent = { ...event, atMs: Math.round(performance.now() - this.startMs) };
    this.events.push(stamped);
    if (this.events.length > this.maxEvents) {
      this.events.shift();
    }
    this.emitter.emit('event', stamped);
    return stamped;
  }

  /** Calls `listener` for every event recorded from now on; returns a function that removes it. */
  subscribe(listener: (event: EmulatorEvent) => void): () => void {
    this.emitter.on('event', listener);
    return () => this.emitter.off('event', listener);
  }

  /**
   * Resolves with the first event that matches `predicate`, looking at the
   * events already recorded (from `options.fromIndex`) before waiting for new
   * ones. Rejects after `timeoutMs` with the last events in the message.
   */
  waitFor(
    predicate: (event: EmulatorEvent) => boolean,
    timeoutMs: number,
    options: WaitForOptions = {},
  ): Promise<EmulatorEvent> {
    const fromIndex = options.fromIndex ?? 0;
    const past = this.events.slice(fromIndex).find(predicate);
    if (past !== undefined) {
      return Promise.resolve(past);
    }
    return new Promise((resolve, reject) => {
      const onEvent = (event: EmulatorEvent): void => {
        if (predicate(event)) {
          clearTimeout(timer);
          this.emitter.off('event', onEvent);
          resolve(event);
        }
      };
      const timer = setTimeout(() => {
        this.emitter.off('event', onEvent);
        const recent = this.events.slice(-8).map(describeEvent).join('; ');
        reject(new Error(`no matching emulator event within ${timeoutMs} ms; last events: ${recent || 'none'}`));
      }, timeoutMs);
      this.emitter.on('event', onEvent);
    });
  }
}

function describeEvent(event: EmulatorEvent): string {
  const parts: string[] = [event.type];
  if (event.jobId !== undefined) parts.push(`job=${event.jobId}`);
  if (event.alias !== undefined) parts.push(`alias=${event.alias}`);
  if (event.code !== undefined) parts.push(`code=${event.code}`);
  if (event.status !== undefined) parts.push(`status=${event.status}`);
  if (event.detail !== undefined) parts.push(`detail=${event.detail}`);
  return parts.join(' ');
}

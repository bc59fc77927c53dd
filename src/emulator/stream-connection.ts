/**
 * One accepted WebSocket connection of an alias: validates what the client
 * sends, feeds audio to the job, sends results, `done` and errors, and
 * closes with the contract's codes.
 *
 *   open ──""──▶ ending ──done sent──▶ closing ──socket closed──▶ closed
 *     │                                   ▲
 *     └── error, finalization, idle, fault┘
 *   any state ──socket closed or dropped──▶ closed
 *
 * In `closing` the socket can still deliver frames the client sent before it
 * saw the close. They are kept after a close that is not the client's fault
 * (finalization, idle timeout, injected faults) and dropped, counted, after
 * an error close or after end-of-stream.
 */
import { WebSocket, type RawData } from 'ws';
import { CloseCode, END_OF_STREAM_TEXT, type Result, type ServerMessage } from '../jobs/protocol.ts';
import type { Logger } from '../logger.ts';
import type { AliasStream } from './alias-stream.ts';
import type { EmulatedJob } from './emulated-job.ts';
import type { EmulatorEventLog } from './emulator-event-log.ts';
import { findNonFiniteSample, decodeRawAudio } from './raw-audio-decode.ts';
import { validateStreamQuery } from './request-validation.ts';

/** Fault settings that a connection reads while it runs. */
export interface ConnectionFaultState {
  isDoneWithheld(connection: StreamConnection): boolean;
  doneDelayMs(connection: StreamConnection): number;
  ignoresPings(): boolean;
}

export interface StreamConnectionOptions {
  ws: WebSocket;
  job: EmulatedJob;
  alias: string;
  query: URLSearchParams;
  log: Logger;
  events: EmulatorEventLog;
  faults: ConnectionFaultState;
  idleTimeoutMs: number;
  /** Called once, after the socket has closed. */
  onClosed: (connection: StreamConnection) => void;
}

export interface ServerCloseOptions {
  /** Text of an `error` message sent before the close frame. */
  error?: string;
  /** Keep audio that arrives while the close handshake runs. */
  acceptLateAudio?: boolean;
}

type ConnectionState = 'open' | 'ending' | 'closing' | 'closed';

/** Close reasons are limited to 123 bytes by RFC 6455, section 5.5. */
const MAX_CLOSE_REASON_BYTES = 123;

function rawDataToBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) {
    return data;
  }
  if (Array.isArray(data)) {
    return Buffer.concat(data);
  }
  return Buffer.from(data);
}

export class StreamConnection {
  readonly jobId: string;
  readonly alias: string;

  private readonly ws: WebSocket;
  private readonly job: EmulatedJob;
  private readonly query: URLSearchParams;
  private readonly log: Logger;
  private readonly events: EmulatorEventLog;
  private readonly faults: ConnectionFaultState;
  private readonly idleTimeoutMs: number;
  private readonly onClosed: (connection: StreamConnection) => void;

  private state: ConnectionState = 'open';
  private stream: AliasStream | undefined;
  private acceptLateAudio = false;
  private closedByServer = false;
  private paused = false;
  private idleTimer: NodeJS.Timeout | undefined;
  private doneTimer: NodeJS.Timeout | undefined;
  private resumeTimer: NodeJS.Timeout | undefined;

  private resolveClosed: () => void = () => undefined;
  /** Settles once the socket has closed: by the client, by the server or by a drop. */
  readonly closed: Promise<void> = new Promise((resolve) => {
    this.resolveClosed = resolve;
  });

  private framesReceived = 0;
  private bytesReceived = 0;
  private framesDropped = 0;
  private pingsReceived = 0;

  constructor(options: StreamConnectionOptions) {
    this.ws = options.ws;
    this.job = options.job;
    this.jobId = options.job.id;
    this.alias = options.alias;
    this.query = options.query;
    this.log = options.log;
    this.events = options.events;
    this.faults = options.faults;
    this.idleTimeoutMs = options.idleTimeoutMs;
    this.onClosed = options.onClosed;
  }

  /** Installs the socket handlers, then admits the connection or closes it with the reason. */
  start(): void {
    this.ws.on('message', (data, isBinary) => this.onMessage(rawDataToBuffer(data), isBinary));
    this.ws.on('ping', (data) => this.onPing(data));
    this.ws.on('close', (code, reason) => this.onClose(code, reason.toString('utf8')));
    this.ws.on('error', (err) => this.log.warn({ err }, 'stream socket error'));

    if (this.job.status !== 'active' || this.job.mode !== 'realtime') {
      this.closeWith(CloseCode.JOB_NOT_ACTIVE, 'job not active', { error: this.job.notStreamableMessage() });
      return;
    }
    const format = validateStreamQuery(this.query);
    if (typeof format === 'string') {
      this.closeWith(CloseCode.INVALID_QUERY, 'invalid query parameters', { error: format });
      return;
    }
    const outcome = this.job.attach(this.alias, format, this);
    if (!outcome.ok) {
      this.closeWith(outcome.closeCode, 'stream rejected', { error: outcome.message });
      return;
    }
    this.stream = outcome.stream;
    this.log.info({ connection: outcome.stream.connections, receivedBytes: outcome.stream.receivedBytes }, 'stream open');
    this.events.record({
      type: 'stream_open',
      jobId: this.jobId,
      alias: this.alias,
      detail: `connection ${outcome.stream.connections}`,
    });
    this.armIdleTimer();
  }

  /** True once the connection has received "" (it then only waits to send `done`). */
  get ended(): boolean {
    return this.state === 'ending';
  }

  /** Sends result messages, if the socket is still open. */
  sendResults(results: Result[]): void {
    for (const result of results) {
      this.send({ type: 'result', result });
    }
  }

  /**
   * Closes the connection from the server side with `code`, sending an
   * `error` message first when `options.error` is set. Does nothing once a
   * close has started.
   */
  closeWith(code: number, reason: string, options: ServerCloseOptions = {}): void {
    if (this.state === 'closing' || this.state === 'closed') {
      return;
    }
    if (options.error !== undefined) {
      this.send({ type: 'error', error: options.error });
      this.log.info({ code, error: options.error }, 'closing stream with error');
      this.events.record({ type: 'stream_error', jobId: this.jobId, alias: this.alias, code, detail: options.error });
    }
    this.acceptLateAudio = options.acceptLateAudio ?? false;
    this.closedByServer = true;
    this.transition('closing');
    this.ws.close(code, truncateReason(reason));
  }

  /** Destroys the socket without a close frame, as a network fault would. */
  drop(): void {
    if (this.state === 'closed') {
      return;
    }
    this.closedByServer = true;
    this.ws.terminate();
  }

  /**
   * Stops reading from the socket for `durationMs`, so that the client's
   * send buffer fills up. The idle timeout does not run meanwhile.
   */
  pauseReading(durationMs: number): void {
    if (this.state === 'closed') {
      return;
    }
    clearTimeout(this.resumeTimer);
    this.paused = true;
    this.clearIdleTimer();
    this.ws.pause();
    this.resumeTimer = setTimeout(() => {
      this.resumeTimer = undefined;
      this.paused = false;
      if (this.state !== 'closed') {
        this.ws.resume();
        this.armIdleTimer();
      }
    }, durationMs);
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (isBinary) {
      this.onAudio(data);
    } else {
      this.onText(data.toString('utf8'));
    }
  }

  private onAudio(data: Buffer): void {
    switch (this.state) {
      case 'open': {
        const problem = this.checkFrame(data);
        if (problem !== undefined) {
          this.closeWith(CloseCode.FORMAT_MISMATCH, 'invalid audio frame', { error: problem });
          return;
        }
        this.acceptAudio(data);
        return;
      }
      case 'ending':
        clearTimeout(this.doneTimer);
        this.closeWith(CloseCode.FORMAT_MISMATCH, 'audio after end of stream', {
          error: `binary frame of ${data.length} bytes after end of stream; alias ${this.alias} ended with "" and takes no more audio`,
        });
        return;
      case 'closing':
        if (this.acceptLateAudio && this.checkFrame(data) === undefined) {
          this.acceptAudio(data);
        } else {
          this.dropAudio(data, 'audio after the server started closing the stream');
        }
        return;
      case 'closed':
        this.dropAudio(data, 'audio after close');
        return;
    }
  }

  private onText(text: string): void {
    if (text !== END_OF_STREAM_TEXT) {
      this.closeWith(CloseCode.FORMAT_MISMATCH, 'unexpected text frame', {
        error: `text frame ${JSON.stringify(text.slice(0, 40))} is not allowed; send audio in binary frames and "" to end the stream`,
      });
      return;
    }
    if (this.state !== 'open' || this.stream === undefined) {
      // A repeated "" or one that crossed the server's close: nothing left to end.
      return;
    }
    this.transition('ending');
    this.armIdleTimer();
    this.job.endStream(this.stream);
    this.log.info({ receivedBytes: this.stream.receivedBytes, receivedMs: this.stream.receivedMs }, 'end of stream received');
    this.scheduleDone();
  }

  private onPing(data: Buffer): void {
    this.pingsReceived += 1;
    // A ping counts as activity even when the pong is withheld.
    if (!this.paused && (this.state === 'open' || this.state === 'ending')) {
      this.armIdleTimer();
    }
    if (!this.faults.ignoresPings()) {
      this.ws.pong(data);
    }
  }

  private onClose(code: number, reason: string): void {
    const from = this.state;
    this.transition('closed');
    if (this.stream !== undefined) {
      this.job.detach(this.stream, this);
    }
    this.log.info(
      {
        from,
        code,
        reason,
        byServer: this.closedByServer,
        framesReceived: this.framesReceived,
        bytesReceived: this.bytesReceived,
        framesDropped: this.framesDropped,
        pingsReceived: this.pingsReceived,
      },
      'stream closed',
    );
    this.events.record({
      type: 'stream_closed',
      jobId: this.jobId,
      alias: this.alias,
      code,
      detail: reason,
      byServer: this.closedByServer,
    });
    this.onClosed(this);
    this.resolveClosed();
  }

  /** Returns why a binary frame breaks the stream's format, or undefined for a valid frame. */
  private checkFrame(data: Buffer): string | undefined {
    if (data.length === 0) {
      return 'empty binary frame is invalid; send audio, or the text frame "" to end the stream';
    }
    const stream = this.stream;
    if (stream?.frameBytes === undefined) {
      return undefined;
    }
    const { audioFormat, channels } = stream.format;
    if (data.length % stream.frameBytes !== 0) {
      return `binary frame of ${data.length} bytes does not hold whole ${audioFormat} samples for ${channels} channel(s); its length must be a multiple of ${stream.frameBytes} bytes`;
    }
    if (audioFormat === 'f32le') {
      const index = findNonFiniteSample(decodeRawAudio('f32le', data));
      if (index >= 0) {
        return `binary frame contains a NaN or infinite f32le sample at sample ${index}; samples must be finite`;
      }
    }
    return undefined;
  }

  private acceptAudio(data: Buffer): void {
    if (this.stream === undefined) {
      return;
    }
    this.framesReceived += 1;
    this.bytesReceived += data.length;
    if (this.state === 'open') {
      this.armIdleTimer();
    }
    this.job.receiveAudio(this.stream, data);
  }

  private dropAudio(data: Buffer, reason: string): void {
    this.framesDropped += 1;
    if (this.framesDropped === 1) {
      this.log.warn({ bytes: data.length, reason }, 'dropping audio frame');
      this.events.record({ type: 'audio_dropped', jobId: this.jobId, alias: this.alias, detail: reason });
    }
  }

  private scheduleDone(): void {
    if (this.faults.isDoneWithheld(this)) {
      this.log.info('done withheld by fault injection');
      return;
    }
    const delayMs = this.faults.doneDelayMs(this);
    if (delayMs > 0) {
      this.doneTimer = setTimeout(() => this.sendDone(), delayMs);
    } else {
      this.sendDone();
    }
  }

  private sendDone(): void {
    this.doneTimer = undefined;
    if (this.state !== 'ending' || this.stream === undefined) {
      return;
    }
    const durationMs = this.stream.receivedMs;
    this.send({ type: 'done', duration_ms: durationMs });
    this.events.record({ type: 'done_sent', jobId: this.jobId, alias: this.alias, detail: `duration_ms=${durationMs}` });
    this.closeWith(CloseCode.NORMAL, 'done');
  }

  private send(message: ServerMessage): void {
    if (this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
    }
  }

  private transition(to: ConnectionState): void {
    const from = this.state;
    if (from === to) {
      return;
    }
    this.state = to;
    if (to === 'closing' || to === 'closed') {
      this.clearIdleTimer();
      clearTimeout(this.doneTimer);
      this.doneTimer = undefined;
    }
    if (to === 'closed') {
      clearTimeout(this.resumeTimer);
      this.resumeTimer = undefined;
    }
    this.log.debug({ from, to }, 'stream state changed');
  }

  /** Restarts the idle timeout: a connection silent for `idleTimeoutMs` is closed with 1001. */
  private armIdleTimer(): void {
    this.clearIdleTimer();
    if (this.paused) {
      return;
    }
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      this.log.info({ idleTimeoutMs: this.idleTimeoutMs }, 'closing idle stream');
      this.closeWith(CloseCode.GOING_AWAY, 'idle timeout', { acceptLateAudio: true });
    }, this.idleTimeoutMs);
  }

  private clearIdleTimer(): void {
    if (this.idleTimer !== undefined) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
  }
}

function truncateReason(reason: string): string {
  let truncated = reason;
  // Cut whole characters, so that no multi-byte character is split.
  while (Buffer.byteLength(truncated, 'utf8') > MAX_CLOSE_REASON_BYTES) {
    truncated = [...truncated].slice(0, -1).join('');
  }
  return truncated;
}

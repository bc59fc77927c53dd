import { randomFillSync } from 'node:crypto';
import { EventEmitter } from 'node:events';

import pRetry, { AbortError } from 'p-retry';
import WebSocket from 'ws';

import { sleep, systemClock, type Clock } from '../clock.ts';
import type { DeliveryConfig } from '../config/types.ts';
import { StreamClosedError } from '../errors.ts';
import { createSilentLogger, type Logger } from '../logger.ts';
import {
  END_OF_STREAM_TEXT,
  classifyCloseCode,
  classifyUpgradeStatus,
  parseRetryAfterMs,
  parseServerMessage,
  type CloseAction,
  type ServerMessage,
  type StreamState,
} from '../jobs/protocol.ts';
import { fullJitterDelayMs } from './backoff.ts';
import { ChunkQueue, type Chunk } from './chunk-queue.ts';
import { ResendWindow } from './resend-window.ts';

/*
 * Life of one alias's connection:
 *
 *   idle --start()--> connecting --open--> open --end() and queue empty--> ending --done, close 1000--> closed
 *                      ^    |               |                               |
 *                      |    | failed        | dropped, 1001, 1011, ...      | dropped before done
 *                      |    v               v                               v
 *                      +-- reconnecting <---+-------------------------------+
 *
 * Any state goes to `closed` on a fatal close code or refused upgrade, when
 * reconnect attempts run out, or on abort(). `closed` is final.
 */

export type ConnectionStatus = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'ending' | 'closed';

type ConnectionState =
  | { status: 'idle' }
  | { status: 'connecting'; ws: WebSocket; attempt: number }
  | { status: 'open'; ws: WebSocket; openedAtMs: number }
  | { status: 'reconnecting'; attempt: number; delayMs: number }
  | { status: 'ending'; ws: WebSocket; openedAtMs: number; doneTimer: NodeJS.Timeout }
  | { status: 'closed'; outcome: StreamOutcome };

/** Outcome of a stream: `done` for a normal end, otherwise the action that stopped it. */
export interface StreamOutcome {
  action: CloseAction | 'aborted';
  /** True when the server confirmed end-of-stream with a `done` message. */
  doneReceived: boolean;
  /** Duration the server reported in `done`, in milliseconds. */
  serverDurationMs: number | undefined;
  error: StreamClosedError | undefined;
}

/** Status of the alias as the server reports it, used to resume after a reconnect. */
export interface RemoteStreamStatus {
  receivedBytes: number;
  state: StreamState;
}

export interface StreamEndpointInfo {
  url: string;
  /** URL without query string; the only form that is logged. */
  logUrl: string;
  headers: Record<string, string>;
}

export interface StreamConnectionOptions {
  endpoint: StreamEndpointInfo;
  delivery: DeliveryConfig;
  /**
   * True for sources that can wait (files): write() returns false above the
   * high-water mark and nothing is ever dropped. False for live sources:
   * write() always accepts, and the oldest audio beyond `max_outage_ms` is dropped.
   */
  lossless: boolean;
  /** Reads how many bytes the server holds for this alias, to resend exactly what it missed. */
  fetchRemoteStatus?: () => Promise<RemoteStreamStatus | undefined>;
  logger?: Logger;
  clock?: Clock;
  random?: () => number;
  /** Timeout of the WebSocket opening handshake, in milliseconds. */
  handshakeTimeoutMs?: number;
}

/** Counters of one stream; durations in milliseconds of audio. */
export interface StreamStats {
  acceptedBytes: number;
  acceptedMs: number;
  sentBytes: number;
  sentMs: number;
  sentChunks: number;
  resentBytes: number;
  droppedBytes: number;
  droppedMs: number;
  droppedChunks: number;
  /** Audio the server never received and that had left the resend window. */
  lostBytes: number;
  connections: number;
  reconnects: number;
  results: number;
}

/**
 * Sent audio kept for resending after a connection drops, in milliseconds.
 * Audio in the socket's kernel buffer when a connection breaks may never
 * arrive. After reconnecting, the server reports how much it has received,
 * and the missing tail is sent again from here.
 */
const RESEND_WINDOW_MS = 3000;

/** Random bytes that masking keys are taken from, refilled when used up, as ws does by default. */
const maskPool = Buffer.alloc(8192);
let maskPoolOffset = maskPool.length;

/**
 * Fills a WebSocket masking key with random bytes, never all zero. With a
 * zero key ws sends the caller's Buffer itself instead of a masked copy,
 * and `writeBorrowed` relies on that copy.
 */
function fillMask(mask: Buffer): void {
  do {
    if (maskPoolOffset === maskPool.length) {
      randomFillSync(maskPool);
      maskPoolOffset = 0;
    }
    mask[0] = maskPool[maskPoolOffset]!;
    mask[1] = maskPool[maskPoolOffset + 1]!;
    mask[2] = maskPool[maskPoolOffset + 2]!;
    mask[3] = maskPool[maskPoolOffset + 3]!;
    maskPoolOffset += 4;
  } while ((mask[0]! | mask[1]! | mask[2]! | mask[3]!) === 0);
}

/** Log message of the transition into each state. */
const TRANSITION_MESSAGES: Record<ConnectionStatus, string> = {
  idle: 'stream idle',
  connecting: 'connecting stream',
  open: 'stream open',
  reconnecting: 'reconnecting stream',
  ending: 'end of stream sent',
  closed: 'stream closed for good',
};

/** Reason an `AbortError` carries when the server reports the alias already ended. */
class AliasEndedError extends Error {}

/**
 * One reconnecting WebSocket that carries one alias's audio: a state machine
 * with a bounded outage buffer, backpressure on `bufferedAmount`, keepalive
 * pings, and exact resume after reconnects.
 */
export class StreamConnection extends EventEmitter<{
  stateChange: [{ from: ConnectionStatus; to: ConnectionStatus }];
  message: [ServerMessage];
  drain: [];
  closed: [StreamOutcome];
}> {
  readonly stats: StreamStats = {
    acceptedBytes: 0,
    acceptedMs: 0,
    sentBytes: 0,
    sentMs: 0,
    sentChunks: 0,
    resentBytes: 0,
    droppedBytes: 0,
    droppedMs: 0,
    droppedChunks: 0,
    lostBytes: 0,
    connections: 0,
    reconnects: 0,
    results: 0,
  };

  private state: ConnectionState = { status: 'idle' };
  private readonly options: StreamConnectionOptions;
  private readonly delivery: DeliveryConfig;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly abortController = new AbortController();

  /** Audio not yet handed to the current socket. */
  private readonly pending = new ChunkQueue();
  /** Audio handed to the socket and kept for resending. */
  private readonly unconfirmed = new ResendWindow(RESEND_WINDOW_MS);
  /** Byte offset, in the server's count for this alias, of the first byte in `unconfirmed`. */
  private unconfirmedStartOffset = 0;

  private failures = 0;
  private endRequested = false;
  private endOfStreamSent = false;
  /**
   * The socket whose resync waits for the server's byte count. Sending on
   * it waits too. A lookup that returns after its socket was replaced
   * leaves the field to the new socket's own resync.
   */
  private resyncingWs: WebSocket | undefined;
  private needDrain = false;
  private wakeController: AbortController | undefined;
  private doneMessage: { durationMs: number } | undefined;
  private lastServerError: string | undefined;
  private stableTimer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private pongTimer: NodeJS.Timeout | undefined;
  private pongTimedOut = false;
  private outageDroppedMs = 0;
  private readonly closedPromise: Promise<StreamOutcome>;

  constructor(options: StreamConnectionOptions) {
    super();
    this.options = options;
    this.delivery = options.delivery;
    const logger = options.logger ?? createSilentLogger();
    // pino repeats a key that a parent binding already has, so `component` is added only once.
    this.log = 'component' in logger.bindings() ? logger : logger.child({ component: 'stream' });
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.closedPromise = new Promise((resolve) => this.once('closed', resolve));
  }

  get status(): ConnectionStatus {
    return this.state.status;
  }

  /** Audio waiting to be sent, in bytes and milliseconds. */
  get pendingBytes(): number {
    return this.pending.bytes;
  }

  get pendingMs(): number {
    return this.pending.durationMs;
  }

  /** Failed connection attempts and short-lived connections since the last stable connection. */
  get consecutiveFailures(): number {
    return this.failures;
  }

  /** Resolves with the outcome once the stream is closed for good. */
  get closed(): Promise<StreamOutcome> {
    return this.closedPromise;
  }

  /** Starts connecting. Audio written before the connection opens waits in the outage buffer. */
  start(): void {
    if (this.state.status !== 'idle') {
      return;
    }
    void this.connectLoop();
  }

  /**
   * Queues a chunk for sending. Returns false when a lossless writer should
   * wait for `drain`. A live writer's chunk is always accepted; the oldest
   * audio beyond `max_outage_ms` is dropped and counted instead.
   */
  write(chunk: Chunk): boolean {
    if (this.state.status === 'closed' || this.endRequested) {
      this.countDropped(chunk);
      return true;
    }
    this.stats.acceptedBytes += chunk.data.length;
    this.stats.acceptedMs += chunk.durationMs;
    this.pending.push(chunk);
    if (!this.options.lossless) {
      this.enforceOutageBound();
    }
    this.pump();
    if (this.options.lossless && this.pending.bytes >= this.delivery.high_water_bytes) {
      this.needDrain = true;
      return false;
    }
    return true;
  }

  /**
   * Like `write`, for a caller that reuses the chunk's Buffer once this
   * returns. A chunk sent at once is copied by the WebSocket and by the
   * resend window, so only a chunk that stays queued is copied here.
   * NOTE: ws copies a frame only while it masks it at once. It would keep
   * the caller's Buffer for a compressed message or behind a Blob, and this
   * connection sends neither.
   */
  writeBorrowed(chunk: Chunk): boolean {
    const accepted = this.write(chunk);
    const last = this.pending.peekLast();
    if (last === chunk) {
      last.data = Buffer.from(chunk.data);
    }
    return accepted;
  }

  /**
   * Sends what is queued, then end-of-stream, and waits for the server's
   * `done` (bounded by `done_timeout_ms`). Resolves with the outcome.
   */
  end(): Promise<StreamOutcome> {
    if (!this.endRequested) {
      this.endRequested = true;
      this.log.debug({ pendingBytes: this.pending.bytes }, 'end of stream requested');
      this.wakeController?.abort();
      if (this.state.status === 'idle') {
        this.close({ action: 'done', doneReceived: false, serverDurationMs: undefined, error: undefined });
      }
      this.pump();
    }
    return this.closedPromise;
  }

  /** Closes at once without end-of-stream; queued audio is counted as dropped. */
  abort(reason = 'aborted'): void {
    if (this.state.status === 'closed') {
      return;
    }
    this.log.warn({ pendingMs: Math.round(this.pending.durationMs), reason }, 'stream aborted');
    this.close({ action: 'aborted', doneReceived: false, serverDurationMs: undefined, error: undefined });
  }

  // -------------------------------------------------------------------------
  // Connecting and reconnecting.

  private async connectLoop(initialDelayMs = 0): Promise<void> {
    const { reconnect } = this.delivery;
    try {
      if (initialDelayMs > 0) {
        this.transition({ status: 'reconnecting', attempt: this.failures, delayMs: initialDelayMs });
        await this.backoffSleep(initialDelayMs);
      }
      const ws = await pRetry((attempt) => this.connectOnce(attempt), {
        // onFailedAttempt computes and sleeps the delay (full jitter or
        // Retry-After) and enforces the attempt limit. p-retry itself
        // waits 0 ms between attempts and retries forever.
        forever: true,
        retries: 1,
        minTimeout: 0,
        maxTimeout: 0,
        randomize: false,
        signal: this.abortController.signal,
        onFailedAttempt: (failure) => this.onConnectFailed(failure as unknown as Error, reconnect),
      });
      this.onOpen(ws);
    } catch (thrown) {
      if (this.state.status === 'closed') {
        return;
      }
      // p-retry passes on an AbortError thrown from onFailedAttempt as it is.
      const error = thrown instanceof AbortError ? thrown.originalError : thrown;
      if (error instanceof AliasEndedError) {
        this.log.info('server already has end-of-stream for this alias');
        this.close({ action: 'done', doneReceived: false, serverDurationMs: undefined, error: undefined });
        return;
      }
      const streamError =
        error instanceof StreamClosedError
          ? error
          : new StreamClosedError(`stream failed: ${(error as Error).message}`, { retryable: false });
      const action = actionOf(streamError);
      this.log.error({ err: streamError, action }, 'stream stopped');
      this.close({ action, doneReceived: false, serverDurationMs: undefined, error: streamError });
    }
  }

  private connectOnce(attempt: number): Promise<WebSocket> {
    const { endpoint } = this.options;
    const ws = new WebSocket(endpoint.url, {
      headers: endpoint.headers,
      // Compressing PCM costs CPU for little gain, so audio goes uncompressed.
      perMessageDeflate: false,
      handshakeTimeout: this.options.handshakeTimeoutMs ?? 10_000,
      // Server messages are small JSON; the cap bounds memory whatever the server sends.
      maxPayload: 16 * 1024 * 1024,
      generateMask: fillMask,
    });
    // A socket error after this point is also reported by 'close'; this
    // listener keeps it from becoming an uncaught exception.
    ws.on('error', (error) => this.log.debug({ err: error }, 'socket error'));
    this.transition({ status: 'connecting', ws, attempt }, { url: endpoint.logUrl });

    return new Promise((resolve, reject) => {
      const onOpen = (): void => {
        cleanup();
        resolve(ws);
      };
      const onUnexpectedResponse = (_request: unknown, response: import('node:http').IncomingMessage): void => {
        cleanup();
        const statusCode = response.statusCode ?? 0;
        const retryAfterMs = parseRetryAfterMs(response.headers['retry-after'] as string | undefined);
        const chunks: Buffer[] = [];
        response.on('data', (data: Buffer) => chunks.push(data));
        response.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8').slice(0, 300);
          ws.terminate();
          const error = new StreamClosedError(`stream upgrade rejected with ${statusCode}: ${body || response.statusMessage}`, {
            statusCode,
            reason: body,
            retryable: !isFatal(classifyUpgradeStatus(statusCode)),
          });
          (error as StreamClosedError & { retryAfterMs?: number }).retryAfterMs = retryAfterMs;
          reject(error);
        });
        response.on('error', () => undefined);
      };
      const onClose = (code: number, reason: Buffer): void => {
        cleanup();
        reject(
          new StreamClosedError(`stream closed before it opened, code ${code}${reason.length > 0 ? `: ${reason.toString()}` : ''}`, {
            closeCode: code,
            reason: reason.toString(),
            retryable: !isFatal(classifyCloseCode(code)),
          }),
        );
      };
      const onError = (error: Error): void => {
        cleanup();
        ws.terminate();
        reject(new StreamClosedError(`stream connection failed: ${error.message}`, { retryable: true }));
      };
      const cleanup = (): void => {
        ws.off('open', onOpen);
        ws.off('unexpected-response', onUnexpectedResponse);
        ws.off('close', onClose);
        ws.off('error', onError);
      };
      ws.on('open', onOpen);
      ws.on('unexpected-response', onUnexpectedResponse);
      ws.on('close', onClose);
      ws.on('error', onError);
    });
  }

  private async onConnectFailed(error: Error, reconnect: DeliveryConfig['reconnect']): Promise<void> {
    const streamError = error instanceof StreamClosedError ? error : undefined;
    const action = streamError === undefined ? 'backoff' : actionOf(streamError);
    if (isFatal(action)) {
      throw new AbortError(error);
    }
    if (streamError?.statusCode === 409 && this.endOfStreamSent) {
      const remote = await this.fetchRemoteStatus();
      if (remote?.state === 'ended') {
        throw new AbortError(new AliasEndedError('alias ended'));
      }
    }
    this.failures += 1;
    if (reconnect.max_attempts > 0 && this.failures > reconnect.max_attempts) {
      throw new AbortError(
        new StreamClosedError(
          `stream gave up after ${reconnect.max_attempts} reconnect attempts in a row (delivery.reconnect.max_attempts); last error: ${error.message}`,
          { retryable: false, ...(streamError?.closeCode === undefined ? {} : { closeCode: streamError.closeCode }) },
        ),
      );
    }
    const retryAfterMs = (error as { retryAfterMs?: number }).retryAfterMs ?? 0;
    const delayMs = Math.max(
      retryAfterMs,
      fullJitterDelayMs(this.failures - 1, reconnect.initial_delay_ms, reconnect.max_delay_ms, this.random),
    );
    this.transition(
      { status: 'reconnecting', attempt: this.failures, delayMs },
      { statusCode: streamError?.statusCode, closeCode: streamError?.closeCode, err: error },
    );
    await this.backoffSleep(delayMs);
  }

  /**
   * Waits out a backoff delay. abort() ends the wait and the stream. end()
   * ends the wait early once, so that a shutdown tries to deliver the queued
   * audio at once instead of sleeping through its deadline.
   */
  private async backoffSleep(delayMs: number): Promise<void> {
    const wake = new AbortController();
    this.wakeController = wake;
    try {
      await sleep(delayMs, AbortSignal.any([this.abortController.signal, wake.signal]), this.clock);
    } catch (error) {
      if (this.abortController.signal.aborted) {
        throw error;
      }
    } finally {
      this.wakeController = undefined;
    }
  }

  private onOpen(ws: WebSocket): void {
    const openedAtMs = this.clock.nowMs();
    this.stats.connections += 1;
    if (this.stats.connections > 1) {
      this.stats.reconnects += 1;
    }
    this.pongTimedOut = false;
    ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    ws.on('close', (code, reason) => this.onSocketClosed(ws, code, reason.toString()));
    ws.on('pong', () => this.onPong());
    this.transition({ status: 'open', ws, openedAtMs }, { connections: this.stats.connections });
    this.stableTimer = this.clock.setTimeout(() => {
      this.stableTimer = undefined;
      this.failures = 0;
    }, this.delivery.reconnect.stable_after_ms);
    this.schedulePing(ws);
    if (this.outageDroppedMs > 0) {
      this.log.warn({ droppedMs: Math.round(this.outageDroppedMs) }, 'outage ended; oldest audio was dropped');
      this.outageDroppedMs = 0;
    }
    void this.resync(ws);
  }

  /**
   * Queues again what the server missed: after a reconnect, reads how many
   * bytes of this alias the server has received and puts the missing tail
   * of the sent audio back in front, so the server's audio stays contiguous,
   * in source order and without duplicates.
   */
  private async resync(ws: WebSocket): Promise<void> {
    if (this.stats.connections === 1 || this.unconfirmed.length === 0) {
      this.pump();
      return;
    }
    this.resyncingWs = ws;
    const remote = await this.fetchRemoteStatus();
    if (this.resyncingWs === ws) {
      this.resyncingWs = undefined;
    }
    if (this.state.status !== 'open' || this.state.ws !== ws) {
      return;
    }
    const sentEndOffset = this.unconfirmedStartOffset + this.unconfirmed.byteLength;
    const retained = this.unconfirmed.drain();
    if (remote === undefined) {
      // Without the server's count the safe choice is to assume it has
      // everything: resending could duplicate audio on the server.
      this.unconfirmedStartOffset = sentEndOffset;
      this.log.warn({ unconfirmedChunks: retained.length }, 'server byte count unavailable; audio in flight at the drop may be missing');
      this.pump();
      return;
    }
    const receivedBytes = remote.receivedBytes;
    const resend: Chunk[] = [];
    let offset = this.unconfirmedStartOffset;
    for (const chunk of retained) {
      const endOffset = offset + chunk.data.length;
      if (endOffset > receivedBytes) {
        if (offset >= receivedBytes) {
          resend.push({ ...chunk, resent: true });
        } else {
          const skipBytes = receivedBytes - offset;
          resend.push({
            data: chunk.data.subarray(skipBytes),
            durationMs: (chunk.durationMs * (chunk.data.length - skipBytes)) / chunk.data.length,
            resent: true,
          });
        }
      }
      offset = endOffset;
    }
    if (receivedBytes < this.unconfirmedStartOffset) {
      const lostBytes = this.unconfirmedStartOffset - receivedBytes;
      this.stats.lostBytes += lostBytes;
      this.log.warn({ lostBytes, receivedBytes }, 'audio sent before the drop is missing on the server and outside the resend window');
    }
    if (receivedBytes > sentEndOffset) {
      this.log.warn({ receivedBytes, sentBytes: sentEndOffset }, 'server reports more audio than was sent on this alias');
    }
    this.unconfirmedStartOffset = receivedBytes;
    this.pending.unshiftAll(resend);
    if (resend.length > 0) {
      this.log.info({ resendChunks: resend.length, receivedBytes }, 'resending audio the server did not receive');
    }
    this.pump();
  }

  private async fetchRemoteStatus(): Promise<RemoteStreamStatus | undefined> {
    if (this.options.fetchRemoteStatus === undefined) {
      return undefined;
    }
    try {
      return await this.options.fetchRemoteStatus();
    } catch (error) {
      this.log.warn({ err: error }, 'reading the stream status from the server failed');
      return undefined;
    }
  }

  // -------------------------------------------------------------------------
  // Sending.

  /** Sends queued chunks while the socket is open and below the high-water mark. */
  private pump(): void {
    const state = this.state;
    if (state.status !== 'open' || this.resyncingWs === state.ws) {
      return;
    }
    const { ws } = state;
    while (this.pending.length > 0) {
      if (ws.bufferedAmount >= this.delivery.high_water_bytes) {
        return;
      }
      const chunk = this.pending.shift() as Chunk;
      ws.send(chunk.data, { binary: true }, this.onSent);
      if (chunk.resent === true) {
        this.stats.resentBytes += chunk.data.length;
      } else {
        this.stats.sentBytes += chunk.data.length;
        this.stats.sentMs += chunk.durationMs;
        this.stats.sentChunks += 1;
      }
      this.unconfirmedStartOffset += this.unconfirmed.push(chunk.data, chunk.durationMs);
    }
    if (this.needDrain && this.pending.bytes < this.delivery.high_water_bytes) {
      this.needDrain = false;
      this.emit('drain');
    }
    // After a reconnect that follows an unconfirmed end-of-stream, the
    // upgrade succeeding shows the server did not keep it, so it is sent again.
    if (this.endRequested) {
      this.sendEndOfStream(ws, state.openedAtMs);
    }
  }

  /** Resumes sending once the socket has drained below the low-water mark. */
  private readonly onSent = (error?: Error | null): void => {
    // A socket's write callback receives null on success, not undefined.
    if (error !== undefined && error !== null) {
      return;
    }
    const state = this.state;
    if (state.status === 'open' && this.pending.length > 0 && state.ws.bufferedAmount <= this.delivery.low_water_bytes) {
      this.pump();
    }
  };

  private sendEndOfStream(ws: WebSocket, openedAtMs: number): void {
    this.endOfStreamSent = true;
    ws.send(END_OF_STREAM_TEXT);
    const doneTimer = this.clock.setTimeout(() => {
      this.log.warn({ doneTimeoutMs: this.delivery.done_timeout_ms }, 'no "done" from the server before the deadline; closing');
      ws.close(1000);
      this.close({ action: 'done', doneReceived: false, serverDurationMs: undefined, error: undefined });
    }, this.delivery.done_timeout_ms);
    this.transition({ status: 'ending', ws, openedAtMs, doneTimer }, { sentMs: Math.round(this.stats.sentMs) });
  }

  /** Drops the oldest queued audio while the queue contains more than `max_outage_ms`. */
  private enforceOutageBound(): void {
    const maxOutageMs = this.delivery.max_outage_ms;
    while (this.pending.durationMs > maxOutageMs && this.pending.length > 0) {
      const oldest = this.pending.shift() as Chunk;
      if (this.outageDroppedMs === 0) {
        this.log.warn({ maxOutageMs, status: this.state.status }, 'outage buffer full; dropping the oldest audio');
      }
      this.outageDroppedMs += oldest.durationMs;
      this.countDropped(oldest);
    }
  }

  private countDropped(chunk: Chunk): void {
    this.stats.droppedBytes += chunk.data.length;
    this.stats.droppedMs += chunk.durationMs;
    this.stats.droppedChunks += 1;
  }

  // -------------------------------------------------------------------------
  // Receiving and closing.

  private onMessage(data: WebSocket.RawData, isBinary: boolean): void {
    if (isBinary) {
      this.log.debug('ignoring a binary message from the server');
      return;
    }
    const text = Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat(data as Buffer[]).toString('utf8');
    const message = parseServerMessage(text);
    if (message === undefined) {
      this.log.warn({ length: text.length }, 'ignoring an unknown message from the server');
      return;
    }
    switch (message.type) {
      case 'result':
        this.stats.results += 1;
        break;
      case 'error':
        this.lastServerError = message.error;
        this.log.warn({ serverError: message.error }, 'server reported a stream error');
        break;
      case 'done':
        this.doneMessage = { durationMs: message.duration_ms };
        this.log.info({ serverDurationMs: message.duration_ms }, 'server confirmed end of stream');
        break;
    }
    this.emit('message', message);
  }

  private onSocketClosed(ws: WebSocket, code: number, reason: string): void {
    const state = this.state;
    if ((state.status !== 'open' && state.status !== 'ending') || state.ws !== ws) {
      return;
    }
    this.stopTimers();
    const wasStable = this.clock.nowMs() - state.openedAtMs >= this.delivery.reconnect.stable_after_ms;
    const action: CloseAction = this.pongTimedOut ? 'reconnect' : classifyCloseCode(code);
    this.log.info({ closeCode: code, reason, action }, 'stream closed');

    if (action === 'done' || (state.status === 'ending' && this.doneMessage !== undefined)) {
      if (state.status !== 'ending' && this.pending.length > 0) {
        this.log.warn({ pendingMs: Math.round(this.pending.durationMs) }, 'server closed the stream normally with audio still queued');
      }
      this.close({
        action: 'done',
        doneReceived: this.doneMessage !== undefined,
        serverDurationMs: this.doneMessage?.durationMs,
        error: undefined,
      });
      return;
    }
    if (isFatal(action)) {
      const message = this.lastServerError ?? reason;
      const error = new StreamClosedError(`server closed the stream with ${code}${message === '' ? '' : `: ${message}`}`, {
        closeCode: code,
        reason: message,
        retryable: false,
      });
      this.log.error({ err: error, action }, 'stream stopped');
      this.close({ action, doneReceived: false, serverDurationMs: undefined, error });
      return;
    }
    // Reconnect: resync() queues what the server missed once the next
    // connection is open. 1001 reconnects at once; other codes back off first.
    let delayMs = 0;
    if (action === 'backoff') {
      if (!wasStable) {
        this.failures += 1;
      }
      const { reconnect } = this.delivery;
      delayMs = fullJitterDelayMs(this.failures, reconnect.initial_delay_ms, reconnect.max_delay_ms, this.random);
    }
    void this.connectLoop(delayMs);
  }

  private schedulePing(ws: WebSocket): void {
    this.pingTimer = this.clock.setTimeout(() => {
      this.pingTimer = undefined;
      if (ws.readyState !== WebSocket.OPEN) {
        return;
      }
      if (this.pongTimer === undefined) {
        ws.ping();
        this.pongTimer = this.clock.setTimeout(() => {
          this.pongTimer = undefined;
          this.pongTimedOut = true;
          this.log.warn({ pongTimeoutMs: this.delivery.pong_timeout_ms }, 'no pong before the deadline; replacing the connection');
          ws.terminate();
        }, this.delivery.pong_timeout_ms);
      }
      this.schedulePing(ws);
    }, this.delivery.ping_interval_ms);
  }

  private onPong(): void {
    if (this.pongTimer !== undefined) {
      this.clock.clearTimeout(this.pongTimer);
      this.pongTimer = undefined;
    }
  }

  private stopTimers(): void {
    for (const timer of [this.pingTimer, this.pongTimer, this.stableTimer]) {
      if (timer !== undefined) {
        this.clock.clearTimeout(timer);
      }
    }
    this.pingTimer = undefined;
    this.pongTimer = undefined;
    this.stableTimer = undefined;
  }

  private close(outcome: StreamOutcome): void {
    if (this.state.status === 'closed') {
      return;
    }
    const unsent = this.pending.drain();
    for (const chunk of unsent) {
      this.countDropped(chunk);
    }
    this.unconfirmed.clear();
    this.transition({ status: 'closed', outcome }, { action: outcome.action, doneReceived: outcome.doneReceived });
    this.abortController.abort(new Error('stream closed'));
    this.emit('closed', outcome);
  }

  /**
   * Changes `state`, and is the only method that does. It releases what the
   * next state does not keep, logs one line and emits `stateChange`.
   */
  private transition(next: ConnectionState, fields: Record<string, unknown> = {}): void {
    const previous = this.state;
    if (previous.status === next.status && previous.status !== 'reconnecting' && previous.status !== 'connecting') {
      return;
    }
    const previousWs = 'ws' in previous ? previous.ws : undefined;
    const nextWs = 'ws' in next ? next.ws : undefined;
    if (previous.status === 'ending') {
      this.clock.clearTimeout(previous.doneTimer);
    }
    if (previousWs !== undefined && previousWs !== nextWs) {
      this.stopTimers();
      previousWs.removeAllListeners('message');
      previousWs.removeAllListeners('pong');
      if (previousWs.readyState === WebSocket.OPEN) {
        previousWs.close(1000);
        // A peer that never completes the close handshake must not keep the socket open.
        this.clock.setTimeout(() => previousWs.terminate(), 2000).unref();
      } else if (previousWs.readyState === WebSocket.CONNECTING) {
        previousWs.terminate();
      }
    }
    this.state = next;
    const attempt = 'attempt' in next ? next.attempt : undefined;
    const delayMs = 'delayMs' in next ? next.delayMs : undefined;
    const line = { from: previous.status, to: next.status, attempt, delayMs, ...fields };
    if (next.status === 'reconnecting') {
      this.log.warn(line, TRANSITION_MESSAGES[next.status]);
    } else {
      this.log.info(line, TRANSITION_MESSAGES[next.status]);
    }
    this.emit('stateChange', { from: previous.status, to: next.status });
  }
}

function isFatal(action: CloseAction): boolean {
  return action === 'stop_stream' || action === 'stop_job' || action === 'stop_agent';
}

function actionOf(error: StreamClosedError): CloseAction {
  if (error.statusCode !== undefined) {
    return classifyUpgradeStatus(error.statusCode);
  }
  if (error.closeCode !== undefined) {
    return classifyCloseCode(error.closeCode);
  }
  return error.retryable ? 'backoff' : 'stop_stream';
}

/**
 * Local emulator of the Jobs API: the REST endpoints, realtime streams over
 * WebSocket, finalization triggers, webhooks, recordings and fault
 * injection, on one HTTP server. It is strict: whatever the contract does
 * not allow is rejected with the contract's status or close code, so that
 * tests catch a client that drifts.
 *
 * It cannot analyse audio. Results carry signal measurements (level, energy
 * activity) of the audio received, marked `emulated: true`.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { sleep } from '../clock.ts';
import { API_KEY_QUERY_PARAM, CloseCode, SERVER_IDLE_TIMEOUT_MS, type Job, type Result } from '../jobs/protocol.ts';
import { createSilentLogger, type Logger } from '../logger.ts';
import { summaryFormatFields, type RecordingSummary } from './alias-recording.ts';
import { handleApiRequest, injectedRejection, matchRoute, unknownJob, type ApiContext } from './api-router.ts';
import { EmulatedJob, type JobEnvironment, type StoredMediaFile } from './emulated-job.ts';
import { EmulatorEventLog, type EmulatorEvent, type WaitForOptions } from './emulator-event-log.ts';
import { EmulatorFaults, type RestartOptions } from './emulator-faults.ts';
import { EmulatorRejection } from './emulator-rejection.ts';
import { checkCredentials, parseRequestTarget, rejectUpgrade } from './http-io.ts';
import { checkAlias, type ValidatedJobRequest } from './request-validation.ts';
import { StreamConnection } from './stream-connection.ts';
import { WebhookSender } from './webhook-sender.ts';

export type { EmulatorEvent, EmulatorEventType } from './emulator-event-log.ts';
export type { ConnectionFilter, RestartOptions } from './emulator-faults.ts';

export interface EmulatorOptions {
  /** Address to listen on; default 127.0.0.1. */
  host?: string;
  /** Port to listen on; 0 picks a free one. Default 0. */
  port?: number;
  /** Account ID expected as the Basic auth user; default `emulator`. */
  accountId?: string;
  /** API key expected as the Basic auth password; default `emulator-key`. */
  apiKey?: string;
  /** Directory that receives `<job_id>/<alias>.raw` and `.json` recordings. */
  recordDir?: string;
  logger?: Logger;
  /** Time between the last stream closing and a finalizing job becoming finalized; default 100 ms. */
  finalizeDelayMs?: number;
  /** Audio duration covered by one result per analysis; default 1000 ms. */
  resultIntervalMs?: number;
  /** A stream that sends neither audio nor ping for this long is closed with 1001; default 30 s. */
  idleTimeoutMs?: number;
  /** Serve `POST /_emulator/faults`; default false. */
  adminEndpoint?: boolean;
  /** Keep received audio in memory for `getRecording`; default true. Long runs can turn it off and use `recordDir`. */
  retainAudio?: boolean;
  /** Attempts of one webhook delivery; default 5. */
  webhookMaxAttempts?: number;
  /** Delay before the second webhook attempt, doubled for each later one; default 200 ms. */
  webhookRetryDelayMs?: number;
  /** Largest media-file upload body; default 100 MiB. */
  maxUploadBytes?: number;
}

export interface RecordingSnapshot {
  /** Every byte the alias received, in order; empty with `retainAudio: false`. */
  audio: Buffer;
  format: Pick<RecordingSummary, 'audio_format' | 'sample_rate' | 'num_channels'>;
  receivedBytes: number;
  connections: number;
  endOfStream: boolean;
}

export const DEFAULT_ACCOUNT_ID = 'emulator';
export const DEFAULT_API_KEY = 'emulator-key';
export const DEFAULT_HOST = '127.0.0.1';

const MAX_JSON_BODY_BYTES = 1024 * 1024;
const DEFAULT_MAX_UPLOAD_BYTES = 100 * 1024 * 1024;
/** Largest WebSocket message accepted; ws closes the stream with 1009 beyond it. */
const MAX_FRAME_BYTES = 16 * 1024 * 1024;
/** Time that streams get to complete a 1001 close handshake when the server stops, before their sockets are destroyed. */
const SHUTDOWN_GRACE_MS = 500;

export class Emulator {
  readonly accountId: string;
  readonly apiKey: string;
  readonly faults: EmulatorFaults;
  readonly host: string;
  /** Every event so far, oldest first (the oldest are dropped beyond 100,000). Tests read it; nothing else should change it. */
  readonly events: EmulatorEvent[];

  private portNumber = 0;
  private readonly log: Logger;
  private readonly eventLog = new EmulatorEventLog();
  private readonly jobs = new Map<string, EmulatedJob>();
  private readonly connections = new Set<StreamConnection>();
  private readonly wss: WebSocketServer;
  private readonly webhooks: WebhookSender;
  private readonly jobEnvironment: JobEnvironment;
  private readonly apiContext: ApiContext;
  private readonly idleTimeoutMs: number;
  private server: Server;
  private jobSeq = 0;
  private closePromise: Promise<void> | undefined;

  private constructor(options: EmulatorOptions) {
    this.host = options.host ?? DEFAULT_HOST;
    this.portNumber = options.port ?? 0;
    this.accountId = options.accountId ?? DEFAULT_ACCOUNT_ID;
    this.apiKey = options.apiKey ?? DEFAULT_API_KEY;
    const logger = options.logger ?? createSilentLogger();
    // Every part of the emulator logs as one component; a caller's child
    // logger may already carry it, and pino would repeat the key.
    this.log = logger;
    if (logger.bindings()['component'] === undefined) {
      this.log = logger.child({ component: 'emulator' });
    }
    this.events = this.eventLog.events;
    this.idleTimeoutMs = options.idleTimeoutMs ?? SERVER_IDLE_TIMEOUT_MS;

    this.webhooks = new WebhookSender({
      log: this.log,
      events: this.eventLog,
      maxAttempts: options.webhookMaxAttempts ?? 5,
      retryDelayMs: options.webhookRetryDelayMs ?? 200,
      requestTimeoutMs: 5000,
    });

    this.jobEnvironment = {
      log: this.log,
      events: this.eventLog,
      webhooks: this.webhooks,
      resultIntervalMs: options.resultIntervalMs ?? 1000,
      finalizeDelayMs: options.finalizeDelayMs ?? 100,
      recordDir: options.recordDir,
      retainAudio: options.retainAudio ?? true,
    };

    this.faults = new EmulatorFaults(
      { connections: () => this.connections.values(), restart: (restartOptions) => this.restart(restartOptions) },
      this.log,
      this.eventLog,
    );

    this.apiContext = {
      credentials: { accountId: this.accountId, apiKey: this.apiKey },
      baseUrl: () => this.baseUrl,
      jobs: this.jobs,
      createJob: (request) => this.createJob(request),
      faults: this.faults,
      events: this.eventLog,
      log: this.log,
      adminEndpoint: options.adminEndpoint ?? false,
      maxJsonBodyBytes: MAX_JSON_BODY_BYTES,
      maxUploadBytes: options.maxUploadBytes ?? DEFAULT_MAX_UPLOAD_BYTES,
    };

    // StreamConnection sends the pongs, so that fault injection can withhold them.
    this.wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      autoPong: false,
      clientTracking: false,
      maxPayload: MAX_FRAME_BYTES,
    });
    this.server = this.createHttpServer();
  }

  /** Starts an emulator and resolves once it listens. */
  static async start(options: EmulatorOptions = {}): Promise<Emulator> {
    const emulator = new Emulator(options);
    await emulator.listen();
    emulator.log.info({ baseUrl: emulator.baseUrl, recordDir: options.recordDir }, 'emulator listening');
    return emulator;
  }

  /** Port the emulator listens on; it stays the same across `faults.restart()`. */
  get port(): number {
    return this.portNumber;
  }

  /** Base URL of the API, such as `http://127.0.0.1:41234`. */
  get baseUrl(): string {
    let host = this.host;
    if (host === '0.0.0.0' || host === '') {
      host = '127.0.0.1';
    } else if (host === '::') {
      host = '::1';
    }
    return `http://${host.includes(':') ? `[${host}]` : host}:${this.portNumber}`;
  }


  /** Resolves with the first event, past or future, that matches; rejects after `timeoutMs`. */
  waitFor(predicate: (event: EmulatorEvent) => boolean, timeoutMs: number, options?: WaitForOptions): Promise<EmulatorEvent> {
    return this.eventLog.waitFor(predicate, timeoutMs, options);
  }

  /** Calls `listener` for each new event; returns a function that unsubscribes. */
  onEvent(listener: (event: EmulatorEvent) => void): () => void {
    return this.eventLog.subscribe(listener);
  }

  getJob(jobId: string): Job | undefined {
    return this.jobs.get(jobId)?.toJson();
  }

  /** Job IDs in creation order. */
  listJobIds(): string[] {
    return [...this.jobs.keys()];
  }

  /** Returns every result of a job so far, in production order. */
  getResults(jobId: string): Result[] | undefined {
    return this.jobs.get(jobId)?.results.map((entry) => entry.result);
  }

  /** Returns what an alias of a job received, across all its connections. */
  getRecording(jobId: string, alias: string): RecordingSnapshot | undefined {
    const stream = this.jobs.get(jobId)?.aliases.get(alias);
    if (stream === undefined) {
      return undefined;
    }
    return {
      audio: stream.recording.audio(),
      format: summaryFormatFields(stream.format),
      receivedBytes: stream.receivedBytes,
      connections: stream.connections,
      endOfStream: stream.endOfStream,
    };
  }

  /** Media files uploaded to a file job, in upload order. */
  getMediaFiles(jobId: string): StoredMediaFile[] | undefined {
    return this.jobs.get(jobId)?.mediaFiles.slice();
  }

  /**
   * Stops the emulator: streams get a 1001 close (their sockets are destroyed
   * after a short grace period), pending webhook deliveries stop and
   * recording files are closed. Safe to call more than once.
   */
  close(): Promise<void> {
    this.closePromise ??= (async () => {
      await this.stopListening({ drop: false });
      for (const job of this.jobs.values()) {
        job.dispose();
      }
      await this.webhooks.close();
      this.log.info({ jobCount: this.jobs.size }, 'emulator stopped');
    })();
    return this.closePromise;
  }

  private createHttpServer(): Server {
    const server = createServer((req, res) => {
      handleApiRequest(this.apiContext, req, res).catch((err: unknown) => {
        this.log.error({ err }, 'request handler failed');
        res.destroy();
      });
    });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    server.on('error', (err) => this.log.error({ err }, 'emulator server error'));
    return server;
  }

  private listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen(this.portNumber, this.host, () => {
        this.server.off('error', onError);
        this.portNumber = (this.server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  /** Closes the listening port and every connection; jobs and recordings stay. */
  private async stopListening(options: { drop: boolean }): Promise<void> {
    const serverClosed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const streams = [...this.connections];
    const streamsClosed = Promise.all(streams.map((connection) => connection.closed));
    for (const connection of streams) {
      if (options.drop) {
        connection.drop();
      } else {
        connection.closeWith(CloseCode.GOING_AWAY, 'server going away', { acceptLateAudio: true });
      }
    }
    if (streams.length > 0) {
      const grace = new AbortController();
      await Promise.race([streamsClosed, sleep(SHUTDOWN_GRACE_MS, grace.signal).catch(() => undefined)]);
      // Stops the grace timer, so that it does not keep the process alive.
      grace.abort();
      for (const connection of this.connections) {
        connection.drop();
      }
    }
    this.server.closeAllConnections();
    await serverClosed;
  }

  private async restart(options: RestartOptions): Promise<void> {
    if (this.closePromise !== undefined) {
      throw new Error('the emulator is closed and cannot restart; start a new one');
    }
    this.log.info({ port: this.portNumber, drop: options.drop ?? false, downtimeMs: options.downtimeMs ?? 0 }, 'emulator restarting');
    await this.stopListening({ drop: options.drop ?? false });
    if (options.downtimeMs !== undefined && options.downtimeMs > 0) {
      await sleep(options.downtimeMs);
    }
    if (this.closePromise !== undefined) {
      // close() ran during the downtime; the emulator stays down.
      return;
    }
    this.server = this.createHttpServer();
    await this.listen();
    this.eventLog.record({ type: 'server_restarted', detail: `port ${this.portNumber}` });
    this.log.info({ baseUrl: this.baseUrl }, 'emulator listening again');
  }

  private createJob(request: ValidatedJobRequest): EmulatedJob {
    this.jobSeq += 1;
    const job = new EmulatedJob(this.jobSeq, request, this.jobEnvironment);
    this.jobs.set(job.id, job);
    this.log.info({ jobId: job.id, mode: job.mode, analyses: job.analyses }, 'job created');
    this.eventLog.record({ type: 'job_created', jobId: job.id, detail: job.mode });
    return job;
  }

  /** Checks a stream upgrade and either rejects it with an HTTP status or hands it to ws. */
  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', (err) => this.log.debug({ err }, 'upgrade socket error'));
    const url = parseRequestTarget(req.url) ?? new URL('http://emulator.invalid/');
    const route = matchRoute(url.pathname);
    const ids = route?.name === 'stream' ? { jobId: route.jobId, alias: route.alias } : {};
    let job: EmulatedJob;
    let alias: string;
    try {
      if (route?.name !== 'stream') {
        throw new EmulatorRejection(404, 'not_found', `no stream endpoint at ${url.pathname}`);
      }
      const injected = this.faults.takeUpgradeRejection();
      if (injected !== undefined) {
        throw injectedRejection(injected.status, injected.retryAfterSeconds, 'stream upgrade');
      }
      checkCredentials(req.headers.authorization, this.apiContext.credentials, url.searchParams.get(API_KEY_QUERY_PARAM));
      const aliasProblem = checkAlias(route.alias);
      if (aliasProblem !== undefined) {
        throw new EmulatorRejection(400, 'invalid_alias', aliasProblem);
      }
      const found = this.jobs.get(route.jobId);
      if (found === undefined) {
        throw unknownJob(route.jobId);
      }
      // A job that takes no audio is accepted and then closed with 4004, whose
      // meaning (stop streaming to this job) a 409 at the upgrade lacks.
      if (found.status === 'active' && found.mode === 'realtime') {
        const conflict = found.checkAliasAvailable(route.alias);
        if (conflict !== undefined) {
          throw conflict;
        }
      }
      job = found;
      alias = route.alias;
    } catch (err) {
      const rejection =
        err instanceof EmulatorRejection ? err : new EmulatorRejection(500, 'internal_error', 'the emulator failed to handle the upgrade');
      if (!(err instanceof EmulatorRejection)) {
        this.log.error({ err, path: url.pathname }, 'stream upgrade failed inside the emulator');
      }
      this.log.info({ ...ids, status: rejection.status, message: rejection.message }, 'stream upgrade rejected');
      this.eventLog.record({ type: 'upgrade_rejected', ...ids, status: rejection.status, detail: rejection.message });
      rejectUpgrade(socket, rejection);
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws: WebSocket) => this.onConnection(ws, job, alias, url.searchParams));
  }

  private onConnection(ws: WebSocket, job: EmulatedJob, alias: string, query: URLSearchParams): void {
    const connection = new StreamConnection({
      ws,
      job,
      alias,
      query,
      log: this.log.child({ jobId: job.id, alias }),
      events: this.eventLog,
      faults: this.faults,
      idleTimeoutMs: this.idleTimeoutMs,
      onClosed: (closed) => this.connections.delete(closed),
    });
    this.connections.add(connection);
    connection.start();
  }
}

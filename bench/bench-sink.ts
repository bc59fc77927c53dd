/**
 * Benchmark sink: the least of the Jobs API that the agent and the bare
 * relay need (POST /jobs, GET /jobs, GET and PATCH /job/{id}, GET
 * /job/{id}/results, and the stream WebSocket with `done` after the empty
 * text frame), plus a record of when each binary message arrived.
 *
 * It does no analysis and keeps no audio, so that at thousands of streams
 * its own CPU stays small next to the process under test. The emulator
 * (src/emulator) is the strict implementation of the API for tests; this
 * sink checks only what it needs to record arrivals: credentials, the job,
 * and a raw audio format in the stream query.
 *
 * On SIGTERM or SIGINT it closes every stream, writes the arrival record
 * (lib/arrival-log.ts) to `--out` and exits. Events for the runner go to
 * standard output as JSON lines.
 *
 *   node --import tsx bench/bench-sink.ts --port 0 --out /tmp/sink
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';

import {
  CloseCode,
  FINALIZE_BODY,
  JOBS_PATH,
  MEDIA_TYPE,
  RAW_AUDIO_FORMATS,
  isRawAudioFormat,
  type Job,
  type JobStreamInfo,
  type Page,
  type ServerMessage,
} from '../src/jobs/protocol.ts';
import { writeArrivalLog, type AliasArrivals, type ArrivalSummary } from './lib/arrival-log.ts';
import { GrowableFloat64Array } from './lib/growable-array.ts';
import { monotonicMs } from './lib/monotonic-time.ts';
import { emitEvent, numberOption, parseScriptOptions } from './lib/script-args.ts';

/** Largest binary message accepted, in bytes; ws closes the stream with 1009 beyond it. */
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
const MAX_JSON_BODY_BYTES = 1024 * 1024;

interface SinkAlias extends AliasArrivals {
  index: number;
  connected: boolean;
}

interface SinkJob {
  id: string;
  status: Job['status'];
  analyses: string[];
  createdAt: string;
  finalizedAt: string | null;
  aliases: Map<string, SinkAlias>;
}

const options = parseScriptOptions('Usage: bench-sink [--port N] [--out PREFIX]', {
  host: { type: 'string', default: '127.0.0.1', description: 'Address to listen on' },
  port: { type: 'string', default: '0', description: 'TCP port; 0 picks a free one' },
  out: { type: 'string', description: 'Prefix of the arrival record written at the end' },
  'account-id': { type: 'string', default: 'bench', description: 'Account ID expected in Basic auth' },
  'api-key': { type: 'string', default: 'bench-key', description: 'API key expected in Basic auth' },
});
const expectedAuthorization = `Basic ${Buffer.from(`${String(options['account-id'])}:${String(options['api-key'])}`).toString('base64')}`;
const outPrefix = options['out'] === undefined ? undefined : String(options['out']);

const jobs = new Map<string, SinkJob>();
const aliasList: SinkAlias[] = [];
// Per binary message: alias index, end offset in bytes, arrival ms.
const arrivals = new GrowableFloat64Array(3 * 1024 * 1024);
const sockets = new Set<WebSocket>();
let jobCount = 0;
let stopping = false;

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, clientTracking: false, maxPayload: MAX_MESSAGE_BYTES });
const server = createServer((request, response) => {
  handleRequest(request, response).catch((error: unknown) => {
    sendJson(response, 500, { error: { code: 'internal_error', message: (error as Error).message } });
  });
});
server.on('upgrade', (request: IncomingMessage, socket, head) => {
  socket.on('error', () => undefined);
  const rejection = checkUpgrade(request);
  if (typeof rejection === 'number') {
    socket.end(`HTTP/1.1 ${rejection} Rejected\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    return;
  }
  wss.handleUpgrade(request, socket, head, (ws) => onStream(ws, rejection.job, rejection.alias));
});

server.listen(numberOption(options, 'port', 0, 65535), String(options['host']), () => {
  emitEvent('listening', { port: (server.address() as AddressInfo).port });
});
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());

async function handleRequest(request: IncomingMessage, response: ServerResponse): Promise<void> {
  if (request.headers.authorization !== expectedAuthorization) {
    sendJson(response, 401, { error: { code: 'unauthorized', message: 'invalid credentials' } });
    return;
  }
  const url = new URL(request.url ?? '/', 'http://sink.invalid');
  const jobMatch = /^\/job\/([^/]+)(\/results)?$/.exec(url.pathname);
  if (url.pathname === JOBS_PATH && request.method === 'POST') {
    const body = (await readJson(request)) as { mode?: unknown; analyses?: unknown };
    if (body.mode !== 'realtime' || !Array.isArray(body.analyses)) {
      sendJson(response, 422, { error: { code: 'invalid_body', message: 'the sink takes realtime jobs with an analyses array' } });
      return;
    }
    jobCount += 1;
    const job: SinkJob = {
      id: `bench-job-${jobCount}`,
      status: 'active',
      analyses: body.analyses.map(String),
      createdAt: new Date().toISOString(),
      finalizedAt: null,
      aliases: new Map(),
    };
    jobs.set(job.id, job);
    emitEvent('job_created', { jobId: job.id });
    sendJson(response, 201, jobJson(job));
    return;
  }
  if (url.pathname === JOBS_PATH && request.method === 'GET') {
    const data = [...jobs.values()].map(jobJson);
    sendJson(response, 200, page(data, url));
    return;
  }
  const job = jobMatch === null ? undefined : jobs.get(decodeURIComponent(jobMatch[1]!));
  if (jobMatch === null || job === undefined) {
    sendJson(response, 404, { error: { code: 'not_found', message: `no job or endpoint at ${url.pathname}` } });
    return;
  }
  if (jobMatch[2] === '/results' && request.method === 'GET') {
    sendJson(response, 200, page([], url));
    return;
  }
  if (jobMatch[2] === undefined && request.method === 'GET') {
    sendJson(response, 200, jobJson(job));
    return;
  }
  if (jobMatch[2] === undefined && request.method === 'PATCH') {
    const body = (await readJson(request)) as { status?: unknown };
    if (body.status !== FINALIZE_BODY.status) {
      sendJson(response, 422, { error: { code: 'invalid_body', message: 'PATCH takes {"status": "finalizing"}' } });
      return;
    }
    if (job.status === 'active') {
      job.status = 'finalizing';
      finalizeIfIdle(job);
    }
    sendJson(response, 200, jobJson(job));
    return;
  }
  sendJson(response, 405, { error: { code: 'method_not_allowed', message: `${request.method} is not served at ${url.pathname}` } });
}

/** Returns the job and alias of a valid stream upgrade, or the HTTP status to reject it with. */
function checkUpgrade(request: IncomingMessage): { job: SinkJob; alias: SinkAlias } | number {
  const url = new URL(request.url ?? '/', 'http://sink.invalid');
  const match = /^\/job\/([^/]+)\/sources\/streams\/([^/]+)$/.exec(url.pathname);
  if (match === null) {
    return 404;
  }
  if (request.headers.authorization !== expectedAuthorization) {
    return 401;
  }
  const job = jobs.get(decodeURIComponent(match[1]!));
  if (job === undefined) {
    return 404;
  }
  const aliasName = decodeURIComponent(match[2]!);
  const existing = job.aliases.get(aliasName);
  if (existing !== undefined && (existing.connected || existing.endOfStream)) {
    return 409;
  }
  const audioFormat = url.searchParams.get('audio_format') ?? '';
  const sampleRateHz = Number(url.searchParams.get('sample_rate'));
  const channels = Number(url.searchParams.get('num_channels'));
  if (!isRawAudioFormat(audioFormat) || !(sampleRateHz > 0) || !(channels >= 1)) {
    return 400;
  }
  if (existing !== undefined) {
    return { job, alias: existing };
  }
  const alias: SinkAlias = {
    index: aliasList.length,
    alias: aliasName,
    audioFormat,
    sampleRateHz,
    channels,
    bytesPerSecond: sampleRateHz * channels * RAW_AUDIO_FORMATS[audioFormat],
    receivedBytes: 0,
    messages: 0,
    connections: 0,
    endOfStream: false,
    connected: false,
  };
  aliasList.push(alias);
  job.aliases.set(aliasName, alias);
  return { job, alias };
}

function onStream(ws: WebSocket, job: SinkJob, alias: SinkAlias): void {
  if (stopping || job.status !== 'active') {
    ws.close(CloseCode.JOB_NOT_ACTIVE, 'job not active');
    return;
  }
  alias.connected = true;
  alias.connections += 1;
  sockets.add(ws);
  ws.on('message', (data: RawData, isBinary: boolean) => {
    const arrivalMs = monotonicMs();
    if (isBinary) {
      const length = (data as Buffer).length;
      alias.receivedBytes += length;
      alias.messages += 1;
      arrivals.push(alias.index);
      arrivals.push(alias.receivedBytes);
      arrivals.push(arrivalMs);
      return;
    }
    if ((data as Buffer).length === 0) {
      alias.endOfStream = true;
      const done: ServerMessage = { type: 'done', duration_ms: Math.round((alias.receivedBytes / alias.bytesPerSecond) * 1000) };
      ws.send(JSON.stringify(done));
      ws.close(CloseCode.NORMAL);
    }
  });
  ws.on('error', () => undefined);
  ws.on('close', () => {
    alias.connected = false;
    sockets.delete(ws);
    finalizeIfIdle(job);
  });
}

function finalizeIfIdle(job: SinkJob): void {
  if (job.status !== 'finalizing') {
    return;
  }
  for (const alias of job.aliases.values()) {
    if (alias.connected) {
      return;
    }
  }
  job.status = 'finalized';
  job.finalizedAt = new Date().toISOString();
}

function jobJson(job: SinkJob): Job {
  const streams: JobStreamInfo[] = [...job.aliases.values()].map((alias) => ({
    alias: alias.alias,
    state: streamState(alias),
    received_bytes: alias.receivedBytes,
    received_ms: Math.round((alias.receivedBytes / alias.bytesPerSecond) * 1000),
  }));
  return {
    job_id: job.id,
    mode: 'realtime',
    status: job.status,
    analyses: job.analyses,
    created_at: job.createdAt,
    finalized_at: job.finalizedAt,
    streams,
  };
}

/** Returns one page holding everything, because the benchmark never lists more than a few jobs and no results. */
function page<T>(data: T[], url: URL): Page<T> {
  return { meta: { total_count: data.length, per_page: Math.max(1, data.length) }, links: { self: url.pathname, next: null }, data };
}

function streamState(alias: SinkAlias): JobStreamInfo['state'] {
  if (alias.endOfStream) {
    return 'ended';
  }
  return alias.connected ? 'connected' : 'disconnected';
}

async function readJson(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of request) {
    bytes += (chunk as Buffer).length;
    if (bytes > MAX_JSON_BODY_BYTES) {
      throw new Error(`request body over ${MAX_JSON_BODY_BYTES} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    return {};
  }
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': MEDIA_TYPE, 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

async function stop(): Promise<void> {
  if (stopping) {
    return;
  }
  stopping = true;
  for (const ws of sockets) {
    ws.terminate();
  }
  server.closeAllConnections();
  server.close();
  const summary: ArrivalSummary = {
    aliases: aliasList.map(({ index: _index, connected: _connected, ...rest }) => rest),
    messages: arrivals.length / 3,
    jobsCreated: jobCount,
  };
  if (outPrefix !== undefined) {
    await writeArrivalLog(outPrefix, summary, arrivals.view());
  }
  emitEvent('stopped', { aliases: aliasList.length, messages: summary.messages });
  process.exit(0);
}

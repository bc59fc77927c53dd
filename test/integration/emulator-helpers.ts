/**
 * Small clients for the emulator's contract tests: JSON requests with
 * global fetch, and WebSocket streams with `ws` that keep every server
 * message and report rejected upgrades with their status and body.
 */
import { WebSocket } from 'ws';
import { MEDIA_TYPE, parseServerMessage, streamPath, type Job, type ServerMessage } from '../../src/jobs/protocol.ts';
import type { Emulator } from '../../src/emulator/emulator.ts';

export function basicAuth(accountId: string, apiKey: string): string {
  return `Basic ${Buffer.from(`${accountId}:${apiKey}`).toString('base64')}`;
}

export function authOf(emulator: Emulator): string {
  return basicAuth(emulator.accountId, emulator.apiKey);
}

export interface ApiResponse {
  status: number;
  headers: Headers;
  body: any;
}

/** Sends a request to the emulator; `body` objects are sent as JSON in the vendor media type. */
export async function request(
  emulator: Emulator,
  method: string,
  path: string,
  options: { body?: unknown; rawBody?: string | Buffer | FormData; headers?: Record<string, string>; auth?: string | null } = {},
): Promise<ApiResponse> {
  const headers: Record<string, string> = { accept: MEDIA_TYPE };
  const auth = options.auth === undefined ? authOf(emulator) : options.auth;
  if (auth !== null) {
    headers['authorization'] = auth;
  }
  let body: string | Buffer | FormData | undefined;
  if (options.body !== undefined) {
    headers['content-type'] = MEDIA_TYPE;
    body = JSON.stringify(options.body);
  } else if (options.rawBody !== undefined) {
    body = options.rawBody;
  }
  const url = path.startsWith('http') ? path : `${emulator.baseUrl}${path}`;
  const response = await fetch(url, { method, headers: { ...headers, ...options.headers }, body });
  const text = await response.text();
  let parsed: unknown = undefined;
  if (text !== '') {
    parsed = JSON.parse(text);
  }
  return { status: response.status, headers: response.headers, body: parsed };
}

export const REALTIME_JOB = {
  mode: 'realtime',
  analyses: ['transcription', 'toxicity'],
} as const;

export async function createJob(emulator: Emulator, body: Record<string, unknown> = REALTIME_JOB): Promise<Job> {
  const response = await request(emulator, 'POST', '/jobs', { body });
  if (response.status !== 201) {
    throw new Error(`job creation failed with ${response.status}: ${JSON.stringify(response.body)}`);
  }
  return response.body as Job;
}

export const S16LE_16K_MONO = { audio_format: 's16le', sample_rate: 16000, num_channels: 1 } as const;

/** An upgrade that the emulator rejected with an HTTP status instead of 101. */
export class UpgradeRejected extends Error {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: any;

  constructor(status: number, headers: Record<string, string | string[] | undefined>, body: unknown) {
    super(`upgrade rejected with ${status}: ${JSON.stringify(body)}`);
    this.status = status;
    this.headers = headers;
    this.body = body;
  }
}

export interface CloseInfo {
  code: number;
  reason: string;
}

/** A client stream that records every server message from the start. */
export class TestStream {
  readonly ws: WebSocket;
  readonly messages: ServerMessage[] = [];
  /** Frames that are not valid server messages; a strict test expects none. */
  readonly unknownFrames: string[] = [];
  readonly closed: Promise<CloseInfo>;
  pongs = 0;
  private readonly listeners = new Set<() => void>();

  constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data, isBinary) => {
      const message = isBinary ? undefined : parseServerMessage(data.toString());
      if (message === undefined) {
        this.unknownFrames.push(data.toString().slice(0, 200));
      } else {
        this.messages.push(message);
      }
      this.notify();
    });
    ws.on('pong', () => {
      this.pongs += 1;
      this.notify();
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        resolve({ code, reason: reason.toString() });
        this.notify();
      });
    });
  }

  /** Resolves once `condition` holds, checked after every message, pong and close. */
  until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (condition()) {
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (condition()) {
          clearTimeout(timer);
          this.listeners.delete(check);
          resolve();
        }
      };
      const timer = setTimeout(() => {
        this.listeners.delete(check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; messages: ${JSON.stringify(this.messages).slice(0, 500)}`));
      }, timeoutMs);
      this.listeners.add(check);
    });
  }

  messagesOf<T extends ServerMessage['type']>(type: T): Array<Extract<ServerMessage, { type: T }>> {
    return this.messages.filter((message): message is Extract<ServerMessage, { type: T }> => message.type === type);
  }

  send(data: Buffer | string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.ws.send(data, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Sends the end-of-stream text frame. */
  end(): Promise<void> {
    return this.send('');
  }

  private notify(): void {
    for (const listener of [...this.listeners]) {
      listener();
    }
  }
}

export interface ConnectOptions {
  /** `header` (default): Basic auth header; `query`: api_key parameter; `none`: no credentials. */
  auth?: 'header' | 'query' | 'none';
  authorization?: string;
}

/** Opens a stream; rejects with UpgradeRejected when the emulator rejects the upgrade. */
export function connectStream(
  emulator: Emulator,
  jobId: string,
  alias: string,
  query: Record<string, string | number> | URLSearchParams = S16LE_16K_MONO,
  options: ConnectOptions = {},
): Promise<TestStream> {
  const params =
    query instanceof URLSearchParams
      ? new URLSearchParams(query)
      : new URLSearchParams(Object.entries(query).map(([name, value]): [string, string] => [name, String(value)]));
  const headers: Record<string, string> = {};
  const auth = options.auth ?? 'header';
  if (auth === 'header') {
    headers['authorization'] = options.authorization ?? authOf(emulator);
  } else if (auth === 'query') {
    params.set('api_key', emulator.apiKey);
  }
  const base = emulator.baseUrl.replace(/^http/, 'ws');
  const path = /^[A-Za-z0-9._-]*$/.test(alias) ? streamPath(jobId, alias) : `/job/${jobId}/sources/streams/${alias}`;
  const ws = new WebSocket(`${base}${path}?${params.toString()}`, { headers, perMessageDeflate: false });
  const stream = new TestStream(ws);
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(stream));
    ws.once('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        reject(new UpgradeRejected(res.statusCode ?? 0, res.headers, text === '' ? undefined : JSON.parse(text)));
      });
    });
    ws.once('error', (err) => reject(err));
  });
}

/** Expects the upgrade to be rejected and returns the rejection. */
export async function expectUpgradeRejected(promise: Promise<TestStream>): Promise<UpgradeRejected> {
  try {
    const stream = await promise;
    stream.ws.terminate();
  } catch (err) {
    if (err instanceof UpgradeRejected) {
      return err;
    }
    throw err;
  }
  throw new Error('the upgrade was accepted but a rejection was expected');
}

/** s16le mono samples of a sine wave, amplitude in [0, 1]. */
export function sineS16le(options: { frequencyHz: number; sampleRateHz: number; durationMs: number; amplitude: number }): Buffer {
  const frames = Math.round((options.sampleRateHz * options.durationMs) / 1000);
  const buffer = Buffer.alloc(frames * 2);
  for (let i = 0; i < frames; i += 1) {
    const value = Math.round(options.amplitude * 32767 * Math.sin((2 * Math.PI * options.frequencyHz * i) / options.sampleRateHz));
    buffer.writeInt16LE(value, i * 2);
  }
  return buffer;
}

/** Splits `data` into frames of `frameBytes` (the last may be shorter). */
export function chunk(data: Buffer, frameBytes: number): Buffer[] {
  const frames: Buffer[] = [];
  for (let offset = 0; offset < data.length; offset += frameBytes) {
    frames.push(data.subarray(offset, offset + frameBytes));
  }
  return frames;
}

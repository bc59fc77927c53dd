/**
 * HTTP plumbing of the emulator: Basic auth, request bodies, JSON responses in
 * the vendor media type, and rejections of WebSocket upgrades written
 * straight onto the socket.
 */
import { timingSafeEqual } from 'node:crypto';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { MEDIA_TYPE, type ErrorBody } from '../jobs/protocol.ts';
import { EmulatorRejection } from './emulator-rejection.ts';

export interface Credentials {
  accountId: string;
  apiKey: string;
}

/** Realm of the `WWW-Authenticate` challenge on 401 responses. */
const AUTH_CHALLENGE = 'Basic realm="modulate-emulator", charset="UTF-8"';

function equalSecrets(received: string, expected: string): boolean {
  const receivedBytes = Buffer.from(received, 'utf8');
  const expectedBytes = Buffer.from(expected, 'utf8');
  return receivedBytes.length === expectedBytes.length && timingSafeEqual(receivedBytes, expectedBytes);
}

/**
 * Checks HTTP Basic credentials (user = account ID, password = API key).
 * When the header is absent, an `apiKeyParam` (the `api_key` query parameter
 * of a stream upgrade) is checked instead. Throws a 401 rejection.
 */
export function checkCredentials(
  authorization: string | undefined,
  expected: Credentials,
  apiKeyParam?: string | null,
): void {
  if (authorization === undefined || authorization === '') {
    if (apiKeyParam !== undefined && apiKeyParam !== null) {
      if (equalSecrets(apiKeyParam, expected.apiKey)) {
        return;
      }
      throw new EmulatorRejection(401, 'invalid_credentials', 'the api_key query parameter is not a valid API key');
    }
    throw new EmulatorRejection(
      401,
      'missing_credentials',
      'credentials are missing; send Authorization: Basic with the account ID as user and the API key as password',
    );
  }
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(authorization);
  if (match === null) {
    throw new EmulatorRejection(401, 'invalid_credentials', 'the Authorization header must use the Basic scheme');
  }
  const decoded = Buffer.from(match[1] ?? '', 'base64').toString('utf8');
  const separator = decoded.indexOf(':');
  const accountId = separator < 0 ? decoded : decoded.slice(0, separator);
  const apiKey = separator < 0 ? '' : decoded.slice(separator + 1);
  // Both comparisons run, so the timing does not tell which part was wrong.
  const accountMatches = equalSecrets(accountId, expected.accountId);
  const keyMatches = equalSecrets(apiKey, expected.apiKey);
  if (!accountMatches || !keyMatches) {
    throw new EmulatorRejection(401, 'invalid_credentials', 'the account ID or API key is not valid');
  }
}

/** Reads the whole request body; rejects with 413 beyond `maxBytes`. */
export async function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) {
    throw new EmulatorRejection(413, 'body_too_large', `request body of ${declared} bytes exceeds the limit of ${maxBytes} bytes`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req) {
    const buffer = chunk as Buffer;
    total += buffer.length;
    if (total > maxBytes) {
      throw new EmulatorRejection(413, 'body_too_large', `request body exceeds the limit of ${maxBytes} bytes`);
    }
    chunks.push(buffer);
  }
  return Buffer.concat(chunks);
}

/**
 * Parses the target of a request. Only origin-form targets (`/path?query`)
 * are valid here. Anything else, such as `//` or an absolute URL, returns
 * undefined, and the caller rejects the request.
 */
export function parseRequestTarget(target: string | undefined): URL | undefined {
  if (target === undefined || !target.startsWith('/') || target.startsWith('//')) {
    return undefined;
  }
  try {
    return new URL(target, 'http://emulator.invalid');
  } catch {
    return undefined;
  }
}

/** Media type of a Content-Type header, lowercase, without parameters. */
export function mediaTypeOf(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

/** Rejects a JSON body sent with a Content-Type other than the vendor type or application/json. */
export function requireJsonContentType(req: IncomingMessage): void {
  const mediaType = mediaTypeOf(req.headers['content-type']);
  if (mediaType !== MEDIA_TYPE && mediaType !== 'application/json') {
    throw new EmulatorRejection(
      400,
      'unsupported_content_type',
      `Content-Type ${JSON.stringify(req.headers['content-type'] ?? '')} is not supported; send ${MEDIA_TYPE}`,
    );
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': MEDIA_TYPE,
    'content-length': String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
}

function rejectionHeaders(rejection: EmulatorRejection): Record<string, string> {
  const headers: Record<string, string> = {};
  if (rejection.status === 401) {
    headers['www-authenticate'] = AUTH_CHALLENGE;
  }
  if (rejection.retryAfterSeconds !== undefined) {
    headers['retry-after'] = String(rejection.retryAfterSeconds);
  }
  return headers;
}

function errorBody(rejection: EmulatorRejection): ErrorBody {
  return { error: { code: rejection.apiCode, message: rejection.message } };
}

export function sendRejection(res: ServerResponse, rejection: EmulatorRejection, extraHeaders: Record<string, string> = {}): void {
  sendJson(res, rejection.status, errorBody(rejection), { ...rejectionHeaders(rejection), ...extraHeaders });
}

/** Rejects a WebSocket upgrade request with an HTTP error response instead of switching protocols, then closes the socket. */
export function rejectUpgrade(socket: Duplex, rejection: EmulatorRejection): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const text = JSON.stringify(errorBody(rejection));
  const headers = {
    'Content-Type': MEDIA_TYPE,
    'Content-Length': String(Buffer.byteLength(text)),
    Connection: 'close',
    ...rejectionHeaders(rejection),
  };
  const head = [`HTTP/1.1 ${rejection.status} ${STATUS_CODES[rejection.status] ?? 'Error'}`];
  for (const [name, value] of Object.entries(headers)) {
    head.push(`${name}: ${value}`);
  }
  socket.end(`${head.join('\r\n')}\r\n\r\n${text}`);
}

/** Default `Retry-After` of a rejected request or upgrade with status 429 or 503, in seconds. */
export const DEFAULT_RETRY_AFTER_SECONDS = 1;

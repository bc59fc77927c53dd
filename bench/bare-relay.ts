/**
 * Bare relay: the baseline of the benchmark, the least work any agent must
 * do to carry RTP audio into realtime jobs. It creates one job, opens one
 * WebSocket per SSRC on its first packet, and sends the raw payload
 * (bytes 12 onwards, which assumes the plain 12-byte header of the load
 * generator) with `ws.send`. No validation, no jitter buffer, no decoding,
 * no resampling, no reconnects, no outage buffer.
 *
 * With `--frame-packets K` above 1 it copies K payloads into one message,
 * the framing the agent does with `frame_ms: K * 20`; K = 1 sends each
 * payload as it arrives. The audio format declared on the streams is PCMU's
 * own: mulaw, 8000 Hz, mono.
 *
 * On SIGTERM or SIGINT it sends what it holds, ends every stream with the
 * empty text frame, waits a few seconds for `done`, and exits.
 *
 *   node --import tsx bench/bare-relay.ts --listen 127.0.0.1:5004 \
 *     --base-url http://127.0.0.1:18080 --frame-packets 5
 */
import { createSocket } from 'node:dgram';
import WebSocket from 'ws';

import { buildStreamQuery, END_OF_STREAM_TEXT, JOBS_PATH, MEDIA_TYPE, streamPath, type Job } from '../src/jobs/protocol.ts';
import { delay } from './lib/monotonic-time.ts';
import { emitEvent, numberOption, parseHostPort, parseScriptOptions } from './lib/script-args.ts';

const RTP_HEADER_BYTES = 12;
/** Time given to the streams to receive `done` after end-of-stream, in ms. */
const END_TIMEOUT_MS = 5000;
/** Frames kept per stream while its WebSocket is connecting; older ones are dropped. */
const MAX_FRAMES_BEFORE_OPEN = 500;

interface RelayStream {
  ws: WebSocket;
  /** Payloads of the frame being filled. */
  parts: Buffer[];
  partBytes: number;
  /** Frames waiting for the WebSocket to open. */
  waiting: Buffer[];
  open: boolean;
}

const options = parseScriptOptions('Usage: bare-relay --listen HOST:PORT --base-url URL [options]', {
  listen: { type: 'string', description: 'UDP address to receive RTP on, HOST:PORT' },
  'base-url': { type: 'string', description: 'Base URL of the Jobs API (the bench sink)' },
  'account-id': { type: 'string', default: 'bench', description: 'Account ID for Basic auth' },
  'api-key': { type: 'string', default: 'bench-key', description: 'API key for Basic auth' },
  'alias-prefix': { type: 'string', default: 'bench-', description: 'Alias of an SSRC: the prefix, then the SSRC in decimal' },
  'frame-packets': { type: 'string', default: '1', description: 'Payloads per WebSocket message' },
  'receive-buffer-bytes': { type: 'string', default: '4194304', description: 'Requested UDP receive buffer, in bytes' },
}, ['listen', 'base-url']);

const listen = parseHostPort(String(options['listen']));
const baseUrl = String(options['base-url']).replace(/\/+$/, '');
const aliasPrefix = String(options['alias-prefix']);
const framePackets = numberOption(options, 'frame-packets', 1, 50);
const authorization = `Basic ${Buffer.from(`${String(options['account-id'])}:${String(options['api-key'])}`).toString('base64')}`;
const query = buildStreamQuery({ audioFormat: 'mulaw', sampleRateHz: 8000, channels: 1 }).toString();

const response = await fetch(`${baseUrl}${JOBS_PATH}`, {
  method: 'POST',
  headers: { authorization, accept: MEDIA_TYPE, 'content-type': MEDIA_TYPE },
  body: JSON.stringify({ mode: 'realtime', analyses: ['transcription'], finalization_trigger: [{ type: 'manual' }] }),
});
if (response.status !== 201) {
  process.stderr.write(`POST ${JOBS_PATH} returned ${response.status}: ${await response.text()}\n`);
  process.exit(1);
}
const job = (await response.json()) as Job;
const wsBase = baseUrl.replace(/^http/, 'ws');

const streams = new Map<number, RelayStream>();
let datagrams = 0;
let stopping = false;

const socket = createSocket(listen.host.includes(':') ? 'udp6' : 'udp4');
socket.on('message', (datagram) => {
  datagrams += 1;
  if (datagram.length <= RTP_HEADER_BYTES || stopping) {
    return;
  }
  const ssrc = datagram.readUInt32BE(8);
  const stream = streams.get(ssrc) ?? openStream(ssrc);
  const payload = datagram.subarray(RTP_HEADER_BYTES);
  if (framePackets === 1) {
    sendFrame(stream, payload);
    return;
  }
  stream.parts.push(payload);
  stream.partBytes += payload.length;
  if (stream.parts.length === framePackets) {
    sendFrame(stream, Buffer.concat(stream.parts, stream.partBytes));
    stream.parts = [];
    stream.partBytes = 0;
  }
});
await new Promise<void>((resolve, reject) => {
  socket.once('error', reject);
  socket.bind(listen.port, listen.host, () => {
    socket.off('error', reject);
    resolve();
  });
});
socket.setRecvBufferSize(numberOption(options, 'receive-buffer-bytes', 1024));
emitEvent('listening', { port: socket.address().port, jobId: job.job_id });
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());

function openStream(ssrc: number): RelayStream {
  const ws = new WebSocket(`${wsBase}${streamPath(job.job_id, `${aliasPrefix}${ssrc}`)}?${query}`, {
    headers: { authorization },
    perMessageDeflate: false,
  });
  const stream: RelayStream = { ws, parts: [], partBytes: 0, waiting: [], open: false };
  ws.on('open', () => {
    stream.open = true;
    for (const frame of stream.waiting) {
      ws.send(frame, { binary: true });
    }
    stream.waiting = [];
  });
  ws.on('error', () => undefined);
  streams.set(ssrc, stream);
  return stream;
}

function sendFrame(stream: RelayStream, frame: Buffer): void {
  if (stream.open) {
    stream.ws.send(frame, { binary: true });
    return;
  }
  stream.waiting.push(frame);
  if (stream.waiting.length > MAX_FRAMES_BEFORE_OPEN) {
    stream.waiting.shift();
  }
}

async function stop(): Promise<void> {
  if (stopping) {
    return;
  }
  stopping = true;
  socket.close();
  const closed = [...streams.values()].map(async (stream) => {
    if (stream.parts.length > 0) {
      sendFrame(stream, Buffer.concat(stream.parts, stream.partBytes));
    }
    if (!stream.open) {
      stream.ws.terminate();
      return;
    }
    const ended = new Promise<void>((resolve) => stream.ws.once('close', () => resolve()));
    stream.ws.send(END_OF_STREAM_TEXT);
    await Promise.race([ended, delay(END_TIMEOUT_MS)]);
  });
  await Promise.all(closed);
  emitEvent('stopped', { datagrams, streams: streams.size });
  process.exit(0);
}

/**
 * RTP load generator: N concurrent PCMU streams (20 ms packets of 160
 * bytes, RFC 3551) to one UDP address, paced in real time.
 *
 * Each stream has its own SSRC (ssrc-base + index), a random initial
 * sequence number and timestamp, and the marker bit on its first packet.
 * The payload is mu-law audio read from a file and looped, each stream
 * starting at another offset.
 *
 * Pacing: every 20 ms slot is split into `phases` ticks; stream s sends in
 * tick `s % phases` of each slot, so one timer callback sends the packets
 * of about N / phases streams in one batch. Tick k is due at
 * t0 + k * 20 / phases ms on the monotonic clock, computed from k rather
 * than from the previous tick, so the schedule does not drift; a late tick
 * is sent late, never skipped. Streams start in order, `ramp-per-second`
 * streams per second, the way calls arrive.
 *
 * The actual start and end time of every tick is kept and written with the
 * schedule when the process ends (SIGTERM, SIGINT or `--seconds`), see
 * lib/load-log.ts. Events for the runner go to standard output as JSON lines.
 *
 *   node --import tsx bench/rtp-load-generator.ts --target 127.0.0.1:5004 \
 *     --streams 100 --payload-file jfk-8k.ulaw --out /tmp/load
 */
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';

import { GrowableFloat64Array } from './lib/growable-array.ts';
import { PACKET_MS, PACKET_PAYLOAD_BYTES, writeLoadLog, type LoadSchedule } from './lib/load-log.ts';
import { monotonicMs } from './lib/monotonic-time.ts';
import { emitEvent, numberOption, parseHostPort, parseScriptOptions } from './lib/script-args.ts';
import { percentileOfSorted } from './lib/statistics.ts';

const RTP_HEADER_BYTES = 12;
const RTP_VERSION_BYTE = 0x80;
const PCMU_PAYLOAD_TYPE = 0;
const MARKER_BIT = 0x80;
/** Packet buffers per stream, used in turn: a send that the kernel queues keeps its buffer until it completes. */
const BUFFERS_PER_STREAM = 4;
/** Delay before slot 0, so that the `started` event reaches the runner first, in ms. */
const START_DELAY_MS = 50;

interface StreamState {
  ssrc: number;
  sequenceNumber: number;
  timestamp: number;
  payloadOffset: number;
  startSlot: number;
  buffers: Buffer[];
  packetsSent: number;
}

const options = parseScriptOptions(
  'Usage: rtp-load-generator --target HOST:PORT --streams N --payload-file FILE [options]',
  {
    target: { type: 'string', description: 'UDP address of the receiver, HOST:PORT' },
    streams: { type: 'string', description: 'Concurrent streams (one SSRC each)' },
    'payload-file': { type: 'string', description: 'Raw 8 kHz mu-law audio, looped (ffmpeg -f mulaw -ar 8000 -ac 1)' },
    out: { type: 'string', description: 'Prefix of the schedule and tick files written at the end' },
    'ssrc-base': { type: 'string', default: '268435456', description: 'SSRC of stream 0; stream s has ssrc-base + s' },
    phases: { type: 'string', default: '4', description: 'Ticks per 20 ms slot; streams are spread over them' },
    'ramp-per-second': { type: 'string', default: '200', description: 'Streams started per second' },
    seconds: { type: 'string', description: 'Stop after this many seconds (default: run until SIGTERM)' },
  },
  ['target', 'streams', 'payload-file'],
);

const target = parseHostPort(String(options['target']));
const streamCount = numberOption(options, 'streams', 1, 100000);
const ssrcBase = numberOption(options, 'ssrc-base', 0, 0xffffffff - streamCount);
const phases = numberOption(options, 'phases', 1, 20);
const rampPerSecond = numberOption(options, 'ramp-per-second', 1);
const stopAfterMs = options['seconds'] === undefined ? undefined : numberOption(options, 'seconds', 0.1) * 1000;
const outPrefix = options['out'] === undefined ? undefined : String(options['out']);

const payload = readFileSync(String(options['payload-file']));
if (payload.length < PACKET_PAYLOAD_BYTES) {
  process.stderr.write(`payload file ${String(options['payload-file'])} contains ${payload.length} bytes; it needs at least one packet (${PACKET_PAYLOAD_BYTES})\n`);
  process.exit(64);
}

const payloadPackets = Math.floor(payload.length / PACKET_PAYLOAD_BYTES);
const tickMs = PACKET_MS / phases;
const streamsPerSlot = (rampPerSecond * PACKET_MS) / 1000;
const streams: StreamState[] = [];
for (let index = 0; index < streamCount; index++) {
  const buffers: Buffer[] = [];
  for (let copy = 0; copy < BUFFERS_PER_STREAM; copy++) {
    const buffer = Buffer.alloc(RTP_HEADER_BYTES + PACKET_PAYLOAD_BYTES);
    buffer[0] = RTP_VERSION_BYTE;
    buffer.writeUInt32BE(ssrcBase + index, 8);
    buffers.push(buffer);
  }
  streams.push({
    ssrc: ssrcBase + index,
    sequenceNumber: Math.floor(Math.random() * 0x10000),
    timestamp: Math.floor(Math.random() * 0x100000000),
    // Offsets 1.3 s (65 packets) apart, so that neighbouring streams do not carry the same audio.
    payloadOffset: ((index * 65) % payloadPackets) * PACKET_PAYLOAD_BYTES,
    startSlot: Math.floor(index / streamsPerSlot),
    buffers,
    packetsSent: 0,
  });
}
/** Streams of each phase in index order, which is also their order within a tick's batch. */
const streamsByPhase: StreamState[][] = Array.from({ length: phases }, (_, phase) =>
  streams.filter((_, index) => index % phases === phase),
);

const socket = createSocket(target.host.includes(':') ? 'udp6' : 'udp4');
socket.on('error', (error) => {
  process.stderr.write(`rtp load generator socket failed: ${error.message}\n`);
  void finish(1);
});
await new Promise<void>((resolve) => socket.connect(target.port, target.host, resolve));

// Per tick: start ms, end ms, packets sent.
const tickLog = new GrowableFloat64Array(3 * 50 * phases * 600);
let nextTick = 0;
let packetsSent = 0;
let timer: NodeJS.Timeout | undefined;
let finishing = false;
const t0Ms = monotonicMs() + START_DELAY_MS;

emitEvent('started', { t0Ms, streams: streamCount, phases, tickMs, rampPerSecond, ssrcBase, target: `${target.host}:${target.port}` });
scheduleTick();
if (stopAfterMs !== undefined) {
  setTimeout(() => void finish(0), START_DELAY_MS + stopAfterMs).unref();
}
process.on('SIGTERM', () => void finish(0));
process.on('SIGINT', () => void finish(0));

function scheduleTick(): void {
  const delayMs = t0Ms + nextTick * tickMs - monotonicMs();
  timer = setTimeout(runDueTicks, Math.max(0, delayMs));
}

/** Sends every tick that is due; a late timer sends the missed ticks at once, in order. */
function runDueTicks(): void {
  while (!finishing && t0Ms + nextTick * tickMs <= monotonicMs()) {
    sendTick(nextTick);
    nextTick += 1;
  }
  if (!finishing) {
    scheduleTick();
  }
}

function sendTick(tick: number): void {
  const startMs = monotonicMs();
  const slot = Math.floor(tick / phases);
  let sent = 0;
  for (const stream of streamsByPhase[tick % phases]!) {
    // Streams start in index order, so the first one not started ends the batch.
    if (stream.startSlot > slot) {
      break;
    }
    sendPacket(stream);
    sent += 1;
  }
  tickLog.push(startMs);
  tickLog.push(monotonicMs());
  tickLog.push(sent);
  packetsSent += sent;
}

function sendPacket(stream: StreamState): void {
  const buffer = stream.buffers[stream.packetsSent % BUFFERS_PER_STREAM]!;
  buffer[1] = stream.packetsSent === 0 ? MARKER_BIT | PCMU_PAYLOAD_TYPE : PCMU_PAYLOAD_TYPE;
  buffer.writeUInt16BE(stream.sequenceNumber, 2);
  buffer.writeUInt32BE(stream.timestamp, 4);
  payload.copy(buffer, RTP_HEADER_BYTES, stream.payloadOffset, stream.payloadOffset + PACKET_PAYLOAD_BYTES);
  socket.send(buffer);
  stream.sequenceNumber = (stream.sequenceNumber + 1) & 0xffff;
  stream.timestamp = (stream.timestamp + PACKET_PAYLOAD_BYTES) >>> 0;
  stream.payloadOffset += PACKET_PAYLOAD_BYTES;
  if (stream.payloadOffset + PACKET_PAYLOAD_BYTES > payload.length) {
    stream.payloadOffset = 0;
  }
  stream.packetsSent += 1;
}

async function finish(exitCode: number): Promise<void> {
  if (finishing) {
    return;
  }
  finishing = true;
  clearTimeout(timer);
  const ticks = tickLog.view();
  const tickCount = ticks.length / 3;
  const lagsMs = new Float64Array(tickCount);
  for (let tick = 0; tick < tickCount; tick++) {
    lagsMs[tick] = ticks[3 * tick]! - (t0Ms + tick * tickMs);
  }
  lagsMs.sort();
  const schedule: LoadSchedule = {
    t0Ms,
    phases,
    ssrcBase,
    streams: streamCount,
    startSlots: streams.map((stream) => stream.startSlot),
    ticks: tickCount,
    packetsSent,
  };
  if (outPrefix !== undefined) {
    await writeLoadLog(outPrefix, schedule, ticks);
  }
  emitEvent('stopped', {
    packetsSent,
    ticks: tickCount,
    tickLagP50Ms: percentileOfSorted(lagsMs, 50),
    tickLagP99Ms: percentileOfSorted(lagsMs, 99),
    tickLagMaxMs: percentileOfSorted(lagsMs, 100),
  });
  socket.close();
  process.exitCode = exitCode;
}

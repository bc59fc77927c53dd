/**
 * In-process cost of the agent's audio path for RTP, without sockets: PCMU
 * packets go into RtpAudioSource (jitter buffer, decoder, timeline), then
 * through the conversion and framing as an alias stream wires them for a
 * live source (`--path live`, the agent's path for RTP), or through the
 * Node stream pipeline that file sources use (`--path streams`), to a
 * counter of frames. Packets are fed one per stream per round. By default
 * the rounds run back to back, as fast as the path takes them, so the
 * result is CPU time per second of audio per stream, free of the pacing
 * and socket noise of the full benchmark. Use it to compare changes to
 * the hot path.
 *
 * `--round-ms MS` sleeps that long after each round instead, so the path
 * runs with cold caches, as after the agent's waits between packets.
 * NOTE: the CPU time then includes the sleeping loop's own cost (timer
 * wake-ups, and the collections V8 starts when the process looks idle).
 * Compare stream counts, or subtract a run with `--streams 1`.
 *
 *   node --import tsx bench/pipeline-cost.ts --streams 200 --seconds 20 --format s16le [--path streams] [--round-ms 20]
 */
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { FrameCutter, Framer } from '../src/audio/framer.ts';
import { runLivePath } from '../src/audio/live-path.ts';
import { MULAW_ENCODE_TABLE } from '../src/audio/g711.ts';
import { PcmConversion, PcmConverter } from '../src/audio/pcm-converter.ts';
import { systemClock } from '../src/clock.ts';
import { createSilentLogger } from '../src/logger.ts';
import { PayloadTypeTable } from '../src/sources/rtp/payload-types.ts';
import { RtpAudioSource } from '../src/sources/rtp/rtp-audio-source.ts';
import type { RtpPacket } from '../src/sources/rtp/rtp-packet.ts';
import { PACKET_MS, PACKET_PAYLOAD_BYTES } from './lib/load-log.ts';
import { emitEvent, numberOption, parseScriptOptions } from './lib/script-args.ts';

const options = parseScriptOptions('Usage: pipeline-cost [--streams N] [--seconds S] [--format s16le|mulaw] [--frame-ms MS] [--path live|streams] [--round-ms MS]', {
  streams: { type: 'string', default: '200', description: 'Streams processed side by side' },
  seconds: { type: 'string', default: '20', description: 'Seconds of audio per stream' },
  format: { type: 'string', default: 's16le', description: 's16le (16 kHz, resampled) or mulaw (8 kHz)' },
  'frame-ms': { type: 'string', default: '100', description: 'Audio per frame, in ms' },
  path: { type: 'string', default: 'live', description: 'live (the RTP path) or streams (the Node stream pipeline of file sources)' },
  'payload-file': { type: 'string', description: 'Raw 8 kHz mu-law audio to loop; a 440 Hz tone when omitted' },
  'round-ms': {
    type: 'string',
    default: '0',
    description: 'Sleep after each round, in ms: 0 (the event loop only turns) or 1 to 1000. Rounds then last longer than their 20 ms of audio',
  },
});
const streamCount = numberOption(options, 'streams', 1);
const packetsPerStream = Math.round((numberOption(options, 'seconds', 0.02) * 1000) / PACKET_MS);
const frameMs = numberOption(options, 'frame-ms', 10, 1000);
const roundMs = numberOption(options, 'round-ms', 0, 1000);
if (roundMs > 0 && roundMs < 1) {
  process.stderr.write(`invalid --round-ms ${roundMs}; use 0 or a number from 1 to 1000 (timers wait at least 1 ms)\n`);
  process.exit(64);
}
const format = String(options['format']);
if (format !== 's16le' && format !== 'mulaw') {
  process.stderr.write(`invalid --format ${format}; use s16le or mulaw\n`);
  process.exit(64);
}
const path = String(options['path']);
if (path !== 'live' && path !== 'streams') {
  process.stderr.write(`invalid --path ${path}; use live or streams\n`);
  process.exit(64);
}
const output = { format, sample_rate_hz: format === 's16le' ? 16000 : 8000, channels: 1, frame_ms: frameMs } as const;
const payload = options['payload-file'] === undefined ? toneMulaw() : readFileSync(String(options['payload-file']));

const logger = createSilentLogger();
const payloadTypes = new PayloadTypeTable({});
let frames = 0;
const sources: RtpAudioSource[] = [];
const pipelines: Array<Promise<void>> = [];
for (let stream = 0; stream < streamCount; stream++) {
  const source = new RtpAudioSource({
    ssrc: stream,
    format: { sampleRateHz: 8000, channels: 1 },
    payloadTypes,
    jitterMs: 60,
    fillGaps: true,
    maxGapFillMs: 10000,
    clock: systemClock,
    logger,
  });
  const converterOptions = { output, inputSampleRateHz: 8000, inputChannels: 1, logger };
  const framerOptions = { format: { encoding: format, sampleRateHz: output.sample_rate_hz, channels: 1 }, frameMs } as const;
  sources.push(source);
  if (path === 'live') {
    pipelines.push(
      runLivePath({
        readable: source.readable,
        conversion: await PcmConversion.create(converterOptions),
        cutter: new FrameCutter(framerOptions),
        onFrame: () => {
          frames += 1;
        },
      }),
    );
    continue;
  }
  const converter = await PcmConverter.create(converterOptions);
  const framer = new Framer(framerOptions);
  const counter = new Writable({
    objectMode: true,
    write: (_frame, _encoding, callback) => {
      frames += 1;
      callback();
    },
  });
  pipelines.push(pipeline(source.readable, converter, framer, counter));
}

const cpuBefore = process.cpuUsage();
const startMs = performance.now();
for (let index = 0; index < packetsPerStream; index++) {
  const offset = (index * PACKET_PAYLOAD_BYTES) % (payload.length - PACKET_PAYLOAD_BYTES);
  for (let stream = 0; stream < streamCount; stream++) {
    sources[stream]!.push(packetOf(stream, index, payload.subarray(offset, offset + PACKET_PAYLOAD_BYTES)));
  }
  // One round per 20 ms of audio. In between, the event loop turns once, or sleeps for --round-ms.
  await new Promise((resolve) => (roundMs === 0 ? setImmediate(resolve) : setTimeout(resolve, roundMs)));
}
await Promise.all(sources.map((source) => source.stopped()));
await Promise.all(pipelines);
const cpu = process.cpuUsage(cpuBefore);
const audioSeconds = (packetsPerStream * PACKET_MS) / 1000;
emitEvent('pipeline_cost', {
  streams: streamCount,
  format,
  path,
  frameMs,
  roundMs,
  audioSecondsPerStream: audioSeconds,
  frames,
  wallMs: Math.round(performance.now() - startMs),
  cpuMicrosPerStreamSecond: Math.round((cpu.user + cpu.system) / streamCount / audioSeconds),
  rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20),
});

function packetOf(ssrc: number, index: number, body: Buffer): RtpPacket {
  return {
    marker: index === 0,
    payloadType: 0,
    sequenceNumber: index & 0xffff,
    timestamp: (index * PACKET_PAYLOAD_BYTES) >>> 0,
    ssrc,
    csrcs: [],
    extensionProfile: undefined,
    payload: body,
  };
}

/** Builds one second of a 440 Hz tone at -20 dBFS in mu-law, with the agent's own encoder table. */
function toneMulaw(): Buffer {
  const bytes = Buffer.alloc(8000);
  for (let index = 0; index < bytes.length; index++) {
    const sample = Math.round(0.1 * 32767 * Math.sin((2 * Math.PI * 440 * index) / 8000));
    bytes[index] = MULAW_ENCODE_TABLE[sample + 32768]!;
  }
  return bytes;
}

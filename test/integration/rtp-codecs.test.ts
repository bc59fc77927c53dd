/**
 * ffmpeg sends the test recording as RTP in five codecs to a running agent,
 * one port each. The emulator's recording of each alias is compared with
 * ffmpeg's own encoding of the same input, decoded independently.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createSocket } from 'node:dgram';
import { after, before, describe, it } from 'node:test';

import { Emulator } from '../../src/emulator/emulator.ts';
import {
  JFK_WAV,
  decodeToS16le,
  ffmpeg,
  makeTempDir,
  parseLogLines,
  startCli,
  withTimeout,
  writeConfig,
  type CliRun,
} from '../helpers/tools.ts';
import { buildRtpPacket } from '../helpers/rtp-test-kit.ts';

interface CodecCase {
  alias: string;
  /** ffmpeg encoder arguments for the RTP sender. */
  encodeArgs: string[];
  payloadTypes: string;
  output: string;
  /** Bytes per second of the stream's output format. */
  outputBytesPerSecond: number;
}

/**
 * ffmpeg 5.1 puts dynamic payloads on type 97 and cuts PCM into packets of
 * `pkt_size` bytes: 172 is 12 of header and 160 of payload, 20 ms of G.711.
 */
const CODECS: CodecCase[] = [
  {
    alias: 'pcmu',
    encodeArgs: ['-ar', '8000', '-acodec', 'pcm_mulaw', '-pkt_size', '172'],
    payloadTypes: '{}',
    output: '{format: mulaw, sample_rate_hz: 8000}',
    outputBytesPerSecond: 8000,
  },
  {
    alias: 'pcma',
    encodeArgs: ['-ar', '8000', '-acodec', 'pcm_alaw', '-pkt_size', '172'],
    payloadTypes: '{}',
    output: '{format: alaw, sample_rate_hz: 8000}',
    outputBytesPerSecond: 8000,
  },
  {
    alias: 'l16',
    encodeArgs: ['-acodec', 'pcm_s16be', '-pkt_size', '652'],
    payloadTypes: '{97: "L16/16000/1"}',
    output: '{format: s16le, sample_rate_hz: 16000}',
    outputBytesPerSecond: 32000,
  },
  {
    alias: 'opus',
    encodeArgs: ['-acodec', 'libopus', '-b:a', '32k'],
    payloadTypes: '{97: "opus/48000/2"}',
    output: '{format: s16le, sample_rate_hz: 48000}',
    outputBytesPerSecond: 96000,
  },
  {
    alias: 'g722',
    encodeArgs: ['-acodec', 'g722', '-pkt_size', '172'],
    payloadTypes: '{}',
    output: '{format: s16le, sample_rate_hz: 16000}',
    outputBytesPerSecond: 32000,
  },
];

/**
 * Streams that get every G.711 code from a crafted sender, to show which
 * codes survive decoding to float and encoding again.
 */
const ALL_CODES: Array<{ alias: string; payloadType: number; format: 'mulaw' | 'alaw' }> = [
  { alias: 'mulaw-codes', payloadType: 0, format: 'mulaw' },
  { alias: 'alaw-codes', payloadType: 8, format: 'alaw' },
];
const ALL_CODES_PACKETS = 20;

function configYaml(baseUrl: string, resultsDir: string): string {
  const codeStreams = ALL_CODES.map(
    (stream) => `      - alias: ${stream.alias}
        source: {type: rtp, listen: "127.0.0.1:0"}
        output: {format: ${stream.format}, sample_rate_hz: 8000}`,
  );
  const streams = CODECS.map(
    (codec) => `      - alias: ${codec.alias}
        source: {type: rtp, listen: "127.0.0.1:0", payload_types: ${codec.payloadTypes}, receive_buffer_bytes: 1048576}
        output: ${codec.output}`,
  )
    .concat(codeStreams)
    .join('\n');
  return `api:
  base_url: ${baseUrl}
  account_id: emulator
  api_key: \${TEST_API_KEY}
jobs:
  - name: rtp-codecs
    analyses: [transcription]
    streams:
${streams}
service:
  results_dir: ${JSON.stringify(resultsDir)}
  shutdown_timeout_ms: 15000
`;
}

/** Waits until the agent has logged a listening port for every alias. */
async function listeningPorts(run: CliRun, aliases: string[]): Promise<Map<string, number>> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const ports = new Map<string, number>();
    for (const line of parseLogLines(run.stdout())) {
      if (line['msg'] === 'rtp source listening' && typeof line['alias'] === 'string') {
        ports.set(line['alias'], line['port'] as number);
      }
    }
    if (aliases.every((alias) => ports.has(alias))) {
      return ports;
    }
    if (Date.now() > deadline || run.child.exitCode !== null) {
      throw new Error(`agent did not listen on every RTP port; stdout: ${run.stdout()} stderr: ${run.stderr()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Every byte value from 0 to 255, once. */
const EVERY_CODE = Buffer.from(Array.from({ length: 256 }, (_, code) => code));

/** Sends packets of all 256 codes, 32 ms each, to `port`. */
async function sendEveryCode(port: number, payloadType: number): Promise<void> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  for (let index = 0; index < ALL_CODES_PACKETS; index++) {
    const datagram = buildRtpPacket({ payloadType, sequenceNumber: index, timestamp: index * 256, payload: EVERY_CODE });
    await new Promise<void>((resolve, reject) =>
      socket.send(datagram, port, '127.0.0.1', (error) => (error ? reject(error) : resolve())),
    );
  }
  socket.close();
}

/** Sends the recording as RTP to `port`, at 4 times real time so the loopback socket keeps up. */
async function sendRtp(port: number, encodeArgs: string[]): Promise<void> {
  const child = spawn('ffmpeg', [
    '-hide_banner',
    '-loglevel',
    'error',
    '-readrate',
    '4',
    '-i',
    JFK_WAV,
    ...encodeArgs,
    '-f',
    'rtp',
    `rtp://127.0.0.1:${port}`,
  ]);
  child.stdout.resume();
  let stderr = '';
  child.stderr.on('data', (data: Buffer) => {
    stderr += data.toString();
  });
  const [code] = await once(child, 'exit');
  assert.equal(code, 0, `ffmpeg RTP sender failed: ${stderr}`);
}

/** Lag of `actual` against `reference`, within 0 to maxLag samples, with the least squared difference over one window. */
function bestLag(reference: Int16Array, actual: Int16Array, maxLag: number, window: { start: number; length: number }): number {
  let best = { error: Number.POSITIVE_INFINITY, lag: 0 };
  for (let lag = 0; lag <= maxLag; lag++) {
    let error = 0;
    for (let index = window.start; index < window.start + window.length; index++) {
      error += (reference[index]! - (actual[index + lag] ?? 0)) ** 2;
    }
    if (error < best.error) {
      best = { error, lag };
    }
  }
  return best.lag;
}

/** Signal-to-noise ratio of `actual`, shifted by `lag`, against `reference`, in dB. */
function snrDb(reference: Int16Array, actual: Int16Array, lag: number): number {
  let signal = 0;
  let noise = 0;
  for (let index = 0; index < reference.length; index++) {
    const value = reference[index]!;
    signal += value * value;
    noise += (value - (actual[index + lag] ?? 0)) ** 2;
  }
  return 10 * Math.log10(signal / Math.max(noise, 1));
}

function int16View(buffer: Buffer): Int16Array {
  const copy = Buffer.from(buffer);
  return new Int16Array(copy.buffer, copy.byteOffset, copy.length >> 1);
}

describe('rtp codecs from ffmpeg', () => {
  let emulator: Emulator;
  let dir: string;
  let jobId: string;
  let run: CliRun;

  before(async () => {
    emulator = await Emulator.start({ port: 0 });
    dir = await makeTempDir();
    const config = await writeConfig(dir, configYaml(emulator.baseUrl, join(dir, 'results')));
    run = startCli(['run', '--config', config], { TEST_API_KEY: emulator.apiKey });
    const ports = await listeningPorts(
      run,
      [...CODECS, ...ALL_CODES].map((stream) => stream.alias),
    );
    await Promise.all([
      ...CODECS.map((codec) => sendRtp(ports.get(codec.alias)!, codec.encodeArgs)),
      ...ALL_CODES.map((stream) => sendEveryCode(ports.get(stream.alias)!, stream.payloadType)),
    ]);

    const created = emulator.events.find((event) => event.type === 'job_created');
    assert.ok(created?.jobId, 'no job was created');
    jobId = created.jobId;
    // Wait until every alias has streamed most of the 11 s: the jitter window
    // and the last partial frame arrive only once the agent ends the streams.
    const deadline = Date.now() + 20_000;
    for (const codec of CODECS) {
      while ((emulator.getRecording(jobId, codec.alias)?.receivedBytes ?? 0) < 10.5 * codec.outputBytesPerSecond) {
        assert.ok(Date.now() < deadline, `alias ${codec.alias} received too little audio`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    for (const stream of ALL_CODES) {
      // Whole frames of 100 ms (800 bytes) go out as they fill; the rest when the stream ends.
      const wholeFrameBytes = Math.floor((ALL_CODES_PACKETS * 256) / 800) * 800;
      while ((emulator.getRecording(jobId, stream.alias)?.receivedBytes ?? 0) < wholeFrameBytes) {
        assert.ok(Date.now() < deadline, `alias ${stream.alias} received too little audio`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    run.child.kill('SIGTERM');
    const { code } = await withTimeout(run.exited, 20_000, 'the agent to exit');
    assert.equal(code, 0, `agent exited with ${code}; stderr: ${run.stderr()}`);
  });

  after(async () => {
    run?.child.kill('SIGKILL');
    await emulator?.close();
  });

  for (const [alias, reference] of [
    ['pcmu', 'mulaw'],
    ['pcma', 'alaw'],
  ] as const) {
    it(`passes ${alias} through byte-identical`, async () => {
      // ffmpeg's encoding of the same input is what the RTP payloads carried.
      const expected = await ffmpeg(['-i', JFK_WAV, '-ar', '8000', '-f', reference, '-']);
      const recording = emulator.getRecording(jobId, alias);
      assert.ok(recording, `no recording for ${alias}`);
      assert.equal(recording.format.audio_format, reference);
      assert.equal(recording.endOfStream, true);
      assert.equal(recording.audio.length, expected.length, 'byte count differs');
      assert.ok(recording.audio.equals(expected), 'bytes differ from the payloads ffmpeg sent');
    });
  }

  it('keeps every A-law code', () => {
    const recording = emulator.getRecording(jobId, 'alaw-codes');
    assert.ok(recording);
    assert.ok(recording.audio.equals(Buffer.concat(Array(ALL_CODES_PACKETS).fill(EVERY_CODE))));
  });

  it('keeps every mu-law code', () => {
    // Negative zero (0x7F) too, which decoding and encoding again would turn into 0xFF.
    const recording = emulator.getRecording(jobId, 'mulaw-codes');
    assert.ok(recording);
    assert.ok(recording.audio.equals(Buffer.concat(Array(ALL_CODES_PACKETS).fill(EVERY_CODE))));
  });

  it('delivers L16 byte-identical', async () => {
    const expected = await decodeToS16le(JFK_WAV);
    const recording = emulator.getRecording(jobId, 'l16');
    assert.ok(recording);
    assert.equal(recording.endOfStream, true);
    assert.equal(recording.audio.length, expected.length, 'byte count differs');
    assert.ok(recording.audio.equals(expected), 'samples differ from the source PCM');
  });

  it('delivers G.722 byte-identical', async () => {
    const encoded = join(dir, 'reference.g722');
    await ffmpeg(['-y', '-i', JFK_WAV, '-acodec', 'g722', '-f', 'g722', encoded]);
    const expected = await decodeToS16le(encoded);
    const recording = emulator.getRecording(jobId, 'g722');
    assert.ok(recording);
    assert.equal(recording.endOfStream, true);
    assert.equal(recording.audio.length, expected.length, 'byte count differs');
    assert.ok(recording.audio.equals(expected), 'samples differ from ffmpeg decoding the same G.722');
  });

  it('delivers Opus matching libopus', async () => {
    // The same libopus encoder settings in an Ogg file, decoded by ffmpeg's
    // libopus decoder. The stream is 48 kHz, so no resampler takes part.
    const encoded = join(dir, 'reference.opus');
    await ffmpeg(['-y', '-i', JFK_WAV, '-acodec', 'libopus', '-b:a', '32k', '-f', 'ogg', encoded]);
    const expected = int16View(
      await ffmpeg(['-c:a', 'libopus', '-i', encoded, '-ar', '48000', '-ac', '1', '-f', 's16le', '-']),
    );
    const recording = emulator.getRecording(jobId, 'opus');
    assert.ok(recording);
    assert.equal(recording.endOfStream, true);
    const actual = int16View(recording.audio);
    // RTP carries the encoder's pre-skip of 312 samples (6.5 ms at 48 kHz),
    // which the Ogg decoder drops, and the last packet is padded to 20 ms.
    const lengthDifference = actual.length - expected.length;
    assert.ok(lengthDifference >= 312, `length differs by ${lengthDifference} samples`);
    assert.ok(lengthDifference < 312 + 960, `length differs by ${lengthDifference} samples`);
    // One second of speech from 1 s on is enough to find the alignment.
    const lag = bestLag(expected, actual, 1000, { start: 48000, length: 48000 });
    assert.equal(lag, 312, 'best alignment is not the pre-skip');
    // Two builds of libopus decode the same packets; 60 dB leaves room for
    // rounding differences between them and stereo decoding mixed to mono.
    const ratioDb = snrDb(expected, actual, lag);
    assert.ok(ratioDb >= 60, `SNR ${ratioDb.toFixed(1)} dB; expected at least 60 dB`);
  });
});

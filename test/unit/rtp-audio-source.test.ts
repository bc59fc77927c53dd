import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import type { PcmBlock } from '../../src/audio/format.ts';
import { MULAW_DECODE_TABLE } from '../../src/audio/g711.ts';
import { createSilentLogger } from '../../src/logger.ts';
import { PayloadTypeTable } from '../../src/sources/rtp/payload-types.ts';
import { RtpAudioSource } from '../../src/sources/rtp/rtp-audio-source.ts';
import { parseRtpDatagram, type RtpPacket } from '../../src/sources/rtp/rtp-packet.ts';
import OpusScript from 'opusscript';
import { ManualClock, buildRtpPacket, joinSamples, type PacketFields } from '../helpers/rtp-test-kit.ts';

interface SourceSetup {
  fillGaps?: boolean;
  maxGapFillMs?: number;
  jitterMs?: number;
  payloadTypes?: Record<string, string>;
  sampleRateHz?: number;
  channels?: number;
}

function makeSource(setup: SourceSetup = {}) {
  const clock = new ManualClock();
  const source = new RtpAudioSource({
    ssrc: 0x11223344,
    format: { sampleRateHz: setup.sampleRateHz ?? 8000, channels: setup.channels ?? 1 },
    payloadTypes: new PayloadTypeTable(setup.payloadTypes ?? {}),
    jitterMs: setup.jitterMs ?? 60,
    fillGaps: setup.fillGaps ?? true,
    maxGapFillMs: setup.maxGapFillMs ?? 10000,
    clock,
    logger: createSilentLogger(),
  });
  const blocks: PcmBlock[] = [];
  source.readable.on('data', (block: PcmBlock) => blocks.push(block));
  const send = (fields: PacketFields): void => {
    const parsed = parseRtpDatagram(buildRtpPacket({ ssrc: source.ssrc, ...fields }));
    assert.equal(parsed.kind, 'rtp');
    source.push((parsed as { packet: RtpPacket }).packet);
  };
  /** Sends PCMU packets of 20 ms with payload bytes `code`, one every 20 ms of clock time. */
  const sendPcmu = (firstSequence: number, count: number, firstTimestamp: number, code = 0x80): void => {
    for (let index = 0; index < count; index++) {
      send({
        payloadType: 0,
        sequenceNumber: (firstSequence + index) & 0xffff,
        timestamp: (firstTimestamp + index * 160) >>> 0,
        payload: Buffer.alloc(160, code),
      });
      clock.advance(20);
    }
  };
  const finish = async (): Promise<PcmBlock[]> => {
    await source.stopped();
    await new Promise((resolve) => setImmediate(resolve));
    return blocks;
  };
  return { clock, source, blocks, send, sendPcmu, finish };
}

/** Frames in the blocks, and the runs of silence and audio they contain, as [kind, frames] pairs. */
function runsOf(blocks: PcmBlock[]): Array<['silence' | 'audio', number]> {
  const runs: Array<['silence' | 'audio', number]> = [];
  for (const sample of joinSamples(blocks)) {
    const kind = sample === 0 ? 'silence' : 'audio';
    const last = runs[runs.length - 1];
    if (last !== undefined && last[0] === kind) {
      last[1] += 1;
    } else {
      runs.push([kind, 1]);
    }
  }
  return runs;
}

const PCMU_0X80 = MULAW_DECODE_TABLE[0x80]! / 32768;

describe('rtp audio source', () => {
  test('decodes contiguous PCMU with timestamps', async () => {
    const { sendPcmu, finish } = makeSource();
    sendPcmu(100, 5, 1234);
    const blocks = await finish();
    assert.equal(blocks.length, 5);
    assert.deepEqual(
      blocks.map((block) => block.timestampMs),
      [0, 20, 40, 60, 80],
    );
    for (const block of blocks) {
      assert.equal(block.sampleRateHz, 8000);
      assert.equal(block.channels, 1);
      assert.equal(block.samples.length, 160);
      assert.ok(block.samples.every((sample) => sample === PCMU_0X80));
    }
  });

  test('fills lost packet with silence', async () => {
    const { sendPcmu, clock, source, finish } = makeSource();
    sendPcmu(1, 2, 0);
    clock.advance(20); // packet 3 never arrives
    sendPcmu(4, 2, 480);
    clock.advance(100);
    const blocks = await finish();
    assert.deepEqual(runsOf(blocks), [
      ['audio', 320],
      ['silence', 160],
      ['audio', 320],
    ]);
    assert.deepEqual(
      blocks.filter((block) => block.samples[0] !== 0).map((block) => block.timestampMs),
      [0, 20, 60, 80],
    );
    assert.equal(source.counters().lost, 1);
  });

  test('fills loss even without fill_gaps', async () => {
    const { sendPcmu, clock, finish } = makeSource({ fillGaps: false });
    sendPcmu(1, 2, 0);
    clock.advance(20);
    sendPcmu(4, 1, 480);
    const blocks = await finish();
    assert.deepEqual(runsOf(blocks), [
      ['audio', 320],
      ['silence', 160],
      ['audio', 160],
    ]);
  });

  test('fills talkspurt gap with silence', async () => {
    const { send, sendPcmu, clock, source, finish } = makeSource();
    sendPcmu(1, 3, 0);
    clock.advance(980);
    // The sender stopped for 1 s between talkspurts: sequence numbers go on, the timestamp jumps.
    send({ payloadType: 0, sequenceNumber: 4, timestamp: 480 + 8000, marker: true, payload: Buffer.alloc(160, 0x80) });
    const blocks = await finish();
    assert.deepEqual(runsOf(blocks), [
      ['audio', 480],
      ['silence', 8000],
      ['audio', 160],
    ]);
    assert.equal(blocks[blocks.length - 1]!.timestampMs, 1060);
    assert.equal(source.counters().lost, 0);
    assert.equal(source.counters().discontinuities, 0);
  });

  test('leaves talkspurt gap with fill_gaps off', async () => {
    const { send, sendPcmu, clock, finish } = makeSource({ fillGaps: false });
    sendPcmu(1, 3, 0);
    clock.advance(980);
    send({ payloadType: 0, sequenceNumber: 4, timestamp: 480 + 8000, marker: true, payload: Buffer.alloc(160, 0x80) });
    const blocks = await finish();
    assert.deepEqual(runsOf(blocks), [['audio', 640]]);
    assert.equal(blocks[blocks.length - 1]!.timestampMs, 1060, 'the timestamp still follows the RTP clock');
  });

  test('caps talkspurt fill at max_gap_fill_ms', async () => {
    const { send, sendPcmu, clock, finish } = makeSource({ maxGapFillMs: 1000 });
    sendPcmu(1, 1, 0);
    clock.advance(4980);
    send({ payloadType: 0, sequenceNumber: 2, timestamp: 160 + 5 * 8000, marker: true, payload: Buffer.alloc(160, 0x80) });
    const blocks = await finish();
    assert.deepEqual(runsOf(blocks), [
      ['audio', 160],
      ['silence', 8000],
      ['audio', 160],
    ]);
    assert.equal(blocks[blocks.length - 1]!.timestampMs, 5020);
  });

  test('continues across timestamp wrap', async () => {
    const { sendPcmu, source, finish } = makeSource();
    sendPcmu(65534, 4, 0xffffffff - 319);
    const blocks = await finish();
    assert.deepEqual(runsOf(blocks), [['audio', 640]]);
    assert.deepEqual(
      blocks.map((block) => block.timestampMs),
      [0, 20, 40, 60],
    );
    assert.equal(source.counters().discontinuities, 0);
  });

  test('bridges ssrc change by arrival time', async () => {
    const { sendPcmu, send, clock, source, finish } = makeSource();
    sendPcmu(1, 2, 0);
    // The last packet arrived at 1020 ms and covers 20 ms; the new SSRC arrives 500 ms after that.
    clock.advance(500);
    source.switchSsrc(0x55667788);
    send({ ssrc: 0x55667788, payloadType: 0, sequenceNumber: 30000, timestamp: 999999, payload: Buffer.alloc(160, 0x80) });
    const blocks = await finish();
    assert.deepEqual(runsOf(blocks), [
      ['audio', 320],
      ['silence', 4000],
      ['audio', 160],
    ]);
    const counters = source.counters();
    assert.equal(counters.ssrc, 0x55667788);
    assert.equal(counters.ssrcChanges, 1);
    assert.equal(counters.discontinuities, 1);
    assert.equal(counters.lost, 0);
  });

  test('distrusts timestamp jump contradicting arrival', async () => {
    const { sendPcmu, source, finish } = makeSource();
    sendPcmu(1, 2, 0);
    // Sequence numbers go on but the timestamp leaps an hour ahead 20 ms later.
    sendPcmu(3, 2, 320 + 3600 * 8000);
    const blocks = await finish();
    assert.deepEqual(runsOf(blocks), [['audio', 640]], 'no hour of silence');
    assert.ok(blocks[blocks.length - 1]!.timestampMs < 1000);
    assert.equal(source.counters().discontinuities, 1);
  });

  test('bounds fill by the wall clock', async () => {
    const { send, clock, source, finish } = makeSource({ maxGapFillMs: 10000 });
    // Each packet claims a 2 s talkspurt gap but comes 1 s after the one before:
    // believable one at a time, yet twice as fast as the wall clock in total.
    for (let index = 0; index < 20; index++) {
      send({ payloadType: 0, sequenceNumber: index, timestamp: index * (16000 + 160), payload: Buffer.alloc(160, 0x80) });
      clock.advance(1000);
    }
    const blocks = await finish();
    const filledMs = (source.counters().filledFrames * 1000) / 8000;
    // 19 s of wall clock passed between the first and last packet, plus the 2 s burst allowance.
    assert.ok(filledMs <= 21000, `filled ${filledMs} ms in 19 s`);
    assert.ok(filledMs >= 19000, `filled only ${filledMs} ms`);
    assert.equal(blocks[blocks.length - 1]!.timestampMs, 19 * 2020, 'timestamps still follow the RTP clock');
  });

  test('skips telephone events in sequence', async () => {
    const { send, source, finish } = makeSource({ payloadTypes: { '101': 'telephone-event/8000' } });
    send({ payloadType: 0, sequenceNumber: 1, timestamp: 0, payload: Buffer.alloc(160, 0x80) });
    send({ payloadType: 101, sequenceNumber: 2, timestamp: 160, marker: true, payload: Buffer.from([5, 10, 0, 160]) });
    send({ payloadType: 0, sequenceNumber: 3, timestamp: 320, payload: Buffer.alloc(160, 0x80) });
    const blocks = await finish();
    assert.deepEqual(runsOf(blocks), [
      ['audio', 160],
      ['silence', 160],
      ['audio', 160],
    ]);
    const counters = source.counters();
    assert.equal(counters.nonAudio, 1);
    assert.equal(counters.lost, 0);
  });

  test('decodes big-endian L16', async () => {
    const { send, finish } = makeSource({ payloadTypes: { '96': 'L16/8000/1' } });
    send({ payloadType: 96, sequenceNumber: 1, timestamp: 0, payload: Buffer.from([0x12, 0x34, 0xff, 0xfe]) });
    const blocks = await finish();
    assert.deepEqual([...joinSamples(blocks)], [0x1234 / 32768, -2 / 32768]);
  });

  test('counts undecodable payload as loss', async () => {
    const { send, source, finish } = makeSource({ payloadTypes: { '96': 'L16/8000/1' } });
    const payload = Buffer.alloc(320, 0x10);
    send({ payloadType: 96, sequenceNumber: 1, timestamp: 0, payload });
    send({ payloadType: 96, sequenceNumber: 2, timestamp: 160, payload: Buffer.alloc(319, 0x10) });
    send({ payloadType: 96, sequenceNumber: 3, timestamp: 320, payload });
    const blocks = await finish();
    assert.deepEqual(runsOf(blocks), [
      ['audio', 160],
      ['silence', 160],
      ['audio', 160],
    ]);
    assert.equal(source.counters().malformed, 1);
  });

  test('G.722 timestamps tick at 8 kHz', async () => {
    const { send, source, clock, finish } = makeSource({ sampleRateHz: 16000 });
    for (let index = 0; index < 3; index++) {
      // 160 bytes of G.722 are 320 samples at 16 kHz and 160 ticks of its 8 kHz RTP clock.
      send({ payloadType: 9, sequenceNumber: index, timestamp: index * 160, payload: Buffer.alloc(160, 0xfa) });
      clock.advance(20);
    }
    const blocks = await finish();
    assert.deepEqual(
      blocks.map((block) => [block.sampleRateHz, block.samples.length, block.timestampMs]),
      [
        [16000, 320, 0],
        [16000, 320, 20],
        [16000, 320, 40],
      ],
    );
    assert.equal(source.counters().filledFrames, 0);
  });

  test('conceals lost Opus with decoder', async () => {
    const encoder = new OpusScript(48000, 1, OpusScript.Application.VOIP);
    const tone = Buffer.alloc(960 * 2);
    const { send, clock, finish } = makeSource({ payloadTypes: { '111': 'opus/48000/2' }, sampleRateHz: 48000, channels: 2 });
    let phase = 0;
    for (let index = 0; index < 10; index++) {
      for (let frame = 0; frame < 960; frame++, phase++) {
        tone.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * phase) / 48000)), frame * 2);
      }
      const payload = encoder.encode(tone, 960);
      if (index !== 5) {
        send({ payloadType: 111, sequenceNumber: index, timestamp: index * 960, payload });
      }
      clock.advance(20);
    }
    encoder.delete();
    clock.advance(100);
    const blocks = await finish();
    const samples = joinSamples(blocks);
    assert.equal(samples.length, 10 * 960 * 2, 'the lost 20 ms is filled');
    const concealed = samples.subarray(5 * 960 * 2, 6 * 960 * 2);
    const energy = concealed.reduce((sum, sample) => sum + sample * sample, 0) / concealed.length;
    assert.ok(energy > 1e-4, `concealment carries the tone on (mean square ${energy})`);
  });

  test('converts payload type of another rate', async () => {
    const { send, source, finish } = makeSource({ payloadTypes: { '96': 'L16/16000/1' } });
    send({ payloadType: 0, sequenceNumber: 1, timestamp: 0, payload: Buffer.alloc(160, 0x80) });
    send({ payloadType: 96, sequenceNumber: 2, timestamp: 160, payload: Buffer.alloc(640, 0x10) });
    const blocks = await finish();
    assert.ok(blocks.every((block) => block.sampleRateHz === 8000 && block.channels === 1));
    assert.equal(source.counters().undecodable, 0);
  });
});

import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';

import { pino } from 'pino';

import { MULAW_DECODE_TABLE } from '../../src/audio/g711.ts';
import { ConfigError } from '../../src/errors.ts';
import { createSilentLogger, type Logger } from '../../src/logger.ts';
import { RtpReceiver, type RtpReceiverOptions } from '../../src/sources/rtp/rtp-receiver.ts';
import { CollectingHost, buildRtpPacket, joinSamples, rtpConfig, type PacketFields } from '../helpers/rtp-test-kit.ts';

const sockets: Socket[] = [];
const receivers: RtpReceiver[] = [];

after(async () => {
  for (const socket of sockets) {
    socket.close();
  }
  await Promise.all(receivers.map((receiver) => receiver.close()));
});

async function sender(address = '127.0.0.1'): Promise<Socket> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, address, resolve));
  sockets.push(socket);
  return socket;
}

async function start(
  overrides: Partial<RtpReceiverOptions> & { host: CollectingHost },
): Promise<RtpReceiver> {
  const receiver = await RtpReceiver.start({
    config: rtpConfig(),
    alias: overrides.aliasTemplate === undefined ? 'room' : undefined,
    logger: createSilentLogger(),
    ...overrides,
  } as RtpReceiverOptions);
  receivers.push(receiver);
  return receiver;
}

function send(socket: Socket, receiver: RtpReceiver, datagram: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.send(datagram, receiver.address().port, '127.0.0.1', (error) => (error ? reject(error) : resolve()));
  });
}

/** Sends `count` PCMU packets of 20 ms from `ssrc`, every byte `code`. */
async function sendPcmu(
  socket: Socket,
  receiver: RtpReceiver,
  fields: PacketFields & { ssrc: number; count: number; code?: number; firstSequence?: number },
): Promise<void> {
  const firstSequence = fields.firstSequence ?? 0;
  for (let index = 0; index < fields.count; index++) {
    await send(
      socket,
      receiver,
      buildRtpPacket({
        ssrc: fields.ssrc,
        payloadType: 0,
        sequenceNumber: firstSequence + index,
        timestamp: (firstSequence + index) * 160,
        payload: Buffer.alloc(160, fields.code ?? 0x80),
      }),
    );
  }
}

async function waitUntil(predicate: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function captureLogger(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n').filter((text) => text.length > 0)) {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      callback();
    },
  });
  return { logger: pino({ level: 'debug' }, destination), lines };
}

describe('rtp receiver', () => {
  test('opens static alias after two packets', async () => {
    const host = new CollectingHost();
    const receiver = await start({ host });
    const socket = await sender();
    await sendPcmu(socket, receiver, { ssrc: 42, count: 1 });
    await waitUntil(() => receiver.counters().source.datagrams === 1, 'the first datagram');
    assert.equal(host.streams.size, 0, 'one packet does not confirm an SSRC');
    await sendPcmu(socket, receiver, { ssrc: 42, count: 9, firstSequence: 1 });
    const stream = await host.opened('room');
    assert.equal(stream.request.ssrc, 42);
    assert.equal(stream.request.sampleRateHz, 8000);
    assert.equal(stream.request.channels, 1);
    await waitUntil(() => joinSamples(stream.blocks).length === 1600, 'ten packets of audio');
    assert.ok(joinSamples(stream.blocks).every((sample) => sample === MULAW_DECODE_TABLE[0x80]! / 32768));
    assert.equal(receiver.counters().streams[0]?.received, 10);
  });

  test('switches static alias to new ssrc', async () => {
    const host = new CollectingHost();
    const receiver = await start({ host });
    const socket = await sender();
    await sendPcmu(socket, receiver, { ssrc: 1, count: 5, code: 0x80 });
    const stream = await host.opened('room');
    await sendPcmu(socket, receiver, { ssrc: 2, count: 5, code: 0x90, firstSequence: 30000 });
    await waitUntil(() => receiver.counters().streams[0]?.ssrc === 2, 'the switch to SSRC 2');
    await waitUntil(() => stream.blocks.some((block) => block.samples[0] === MULAW_DECODE_TABLE[0x90]! / 32768), 'audio of SSRC 2');
    assert.equal(host.streams.size, 1);
    const counters = receiver.counters().streams[0]!;
    assert.equal(counters.ssrcChanges, 1);
    assert.equal(counters.lost, 0);
  });

  test('drops senders outside allow_from', async () => {
    const host = new CollectingHost();
    const receiver = await start({ host, config: rtpConfig({ allow_from: ['127.0.0.2', '10.0.0.0/8'] }) });
    const denied = await sender('127.0.0.1');
    const allowed = await sender('127.0.0.2');
    await sendPcmu(denied, receiver, { ssrc: 7, count: 4 });
    await sendPcmu(allowed, receiver, { ssrc: 8, count: 4 });
    const stream = await host.opened('room');
    assert.equal(stream.request.ssrc, 8);
    await waitUntil(() => receiver.counters().source.datagrams === 8, 'eight datagrams');
    assert.equal(receiver.counters().source.notAllowed, 4);
  });

  test('counts RTCP and malformed datagrams', async () => {
    const host = new CollectingHost();
    const receiver = await start({ host });
    const socket = await sender();
    const receiverReport = Buffer.from([0x80, 201, 0, 1, 0, 0, 0, 42]);
    await send(socket, receiver, receiverReport);
    await send(socket, receiver, Buffer.from([0x40, 0, 0, 0]));
    await send(socket, receiver, buildRtpPacket({ version: 1 }));
    await waitUntil(() => receiver.counters().source.datagrams === 3, 'three datagrams');
    const counters = receiver.counters().source;
    assert.equal(counters.rtcp, 1);
    assert.equal(counters.malformed, 2);
    assert.equal(host.streams.size, 0);
  });

  test('reports unmapped payload type once', async () => {
    const host = new CollectingHost();
    const { logger, lines } = captureLogger();
    const receiver = await start({ host, logger });
    const socket = await sender();
    for (let sequenceNumber = 0; sequenceNumber < 5; sequenceNumber++) {
      await send(socket, receiver, buildRtpPacket({ ssrc: 1234, payloadType: 111, sequenceNumber }));
    }
    await waitUntil(() => receiver.counters().source.unknownPayloadType === 5, 'five unknown packets');
    const reports = lines.filter((line) => String(line['msg']).includes('payload type 111'));
    assert.equal(reports.length, 1);
    assert.equal(
      reports[0]!['msg'],
      'payload type 111 from SSRC 1234 is not mapped; add payload_types: {111: "opus/48000/2"} to the rtp source, ' +
        "with the encoding of the sender's SDP a=rtpmap line for this type",
    );
    assert.equal(host.streams.size, 0);
  });

  test('warns once on undecodable payloads', async () => {
    const host = new CollectingHost();
    const { logger, lines } = captureLogger();
    const receiver = await start({ host, logger, config: rtpConfig({ payload_types: { '97': 'L16/16000/2' } }) });
    const socket = await sender();
    for (let sequenceNumber = 0; sequenceNumber < 5; sequenceNumber++) {
      // 642 bytes are not a whole number of 4-byte stereo frames.
      const payload = Buffer.alloc(642);
      await send(socket, receiver, buildRtpPacket({ ssrc: 77, payloadType: 97, sequenceNumber, timestamp: sequenceNumber * 160, payload }));
    }
    await host.opened('room');
    await waitUntil(() => receiver.counters().streams[0]?.undecodable === 5, 'five undecodable payloads');
    const warnings = lines.filter((line) => String(line['msg']).includes('does not decode as'));
    assert.equal(warnings.length, 1);
    assert.match(String(warnings[0]!['msg']), /^payload type 97 from SSRC 77 does not decode as L16\/16000\/2;/);
  });

  test('demuxes two ssrcs to two aliases', async () => {
    const host = new CollectingHost();
    const receiver = await start({ host, aliasTemplate: 'room7-{ssrc}' });
    const socket = await sender();
    await sendPcmu(socket, receiver, { ssrc: 1001, count: 10, code: 0x80 });
    await sendPcmu(socket, receiver, { ssrc: 4000000000, count: 10, code: 0x90 });
    const first = await host.opened('room7-1001');
    const second = await host.opened('room7-4000000000');
    await waitUntil(() => joinSamples(first.blocks).length === 1600 && joinSamples(second.blocks).length === 1600, 'both streams');
    assert.ok(joinSamples(first.blocks).every((sample) => sample === MULAW_DECODE_TABLE[0x80]! / 32768));
    assert.ok(joinSamples(second.blocks).every((sample) => sample === MULAW_DECODE_TABLE[0x90]! / 32768));
  });

  test('ends idle stream and reopens numbered', async () => {
    const host = new CollectingHost();
    const receiver = await start({ host, aliasTemplate: 'room-{ssrc}', config: rtpConfig({ idle_end_ms: 200 }) });
    const socket = await sender();
    await sendPcmu(socket, receiver, { ssrc: 5, count: 3 });
    const first = await host.opened('room-5');
    await first.ended;
    assert.equal(first.endRequested, true, 'the idle stream was ended through the host');
    assert.equal(receiver.counters().source.streamsEnded, 1);
    await sendPcmu(socket, receiver, { ssrc: 5, count: 3, firstSequence: 3 });
    const second = await host.opened('room-5.2');
    assert.equal(second.request.ssrc, 5);
  });

  test('caps streams at max_streams', async () => {
    const host = new CollectingHost();
    const { logger, lines } = captureLogger();
    const receiver = await start({ host, logger, aliasTemplate: 'r-{ssrc}', config: rtpConfig({ max_streams: 3 }) });
    const socket = await sender();
    for (let ssrc = 1; ssrc <= 10; ssrc++) {
      await sendPcmu(socket, receiver, { ssrc, count: 2 });
    }
    await waitUntil(() => receiver.counters().source.datagrams === 20, 'twenty datagrams');
    assert.equal(host.streams.size, 3);
    assert.equal(receiver.counters().source.overMaxStreams, 14);
    assert.equal(lines.filter((line) => String(line['msg']).startsWith('rtp source has max_streams')).length, 1);
  });

  test('rejects ssrc whose stream failed', async () => {
    const host = new CollectingHost();
    host.rejectWith = new Error('job is gone');
    const receiver = await start({ host, aliasTemplate: 'r-{ssrc}' });
    const socket = await sender();
    await sendPcmu(socket, receiver, { ssrc: 9, count: 6 });
    await waitUntil(() => receiver.counters().source.datagrams === 6, 'six datagrams');
    await waitUntil(() => receiver.counters().source.refused > 0, 'rejected packets');
    assert.equal(receiver.counters().streams.length, 0);
    assert.equal(receiver.counters().source.streamsOpened, 1, 'only one attempt while rejected');
  });

  test('rejects invalid payload type mappings', async () => {
    const host = new CollectingHost();
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ '111': 'opus/8000/2' }, /Opus always uses an RTP clock of 48000 Hz/],
      [{ '9': 'G722/16000' }, /G.722 uses an RTP clock of 8000 Hz/],
      [{ '97': 'speex/16000' }, /encoding "speex" is not supported/],
      [{ '72': 'PCMU/8000' }, /collide with RTCP/],
    ];
    for (const [payloadTypes, message] of cases) {
      await assert.rejects(
        RtpReceiver.start({ config: rtpConfig({ payload_types: payloadTypes }), alias: 'x', host, logger: createSilentLogger() }),
        (error: unknown) => error instanceof ConfigError && message.test(error.message),
      );
    }
    await assert.rejects(
      RtpReceiver.start({ config: rtpConfig({ allow_from: ['not-an-ip'] }), alias: 'x', host, logger: createSilentLogger() }),
      (error: unknown) => error instanceof ConfigError && /not an IP address/.test(error.message),
    );
  });

  test('listens on IPv6 loopback', async () => {
    const host = new CollectingHost();
    const receiver = await start({ host, config: rtpConfig({ listen: '[::1]:0' }) });
    assert.equal(receiver.address().family, 'IPv6');
    const socket = createSocket('udp6');
    await new Promise<void>((resolve) => socket.bind(0, '::1', resolve));
    sockets.push(socket);
    for (let sequenceNumber = 0; sequenceNumber < 3; sequenceNumber++) {
      await new Promise<void>((resolve, reject) =>
        socket.send(buildRtpPacket({ sequenceNumber, timestamp: sequenceNumber * 160 }), receiver.address().port, '::1', (error) =>
          error ? reject(error) : resolve(),
        ),
      );
    }
    await host.opened('room');
  });
});

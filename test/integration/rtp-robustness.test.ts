/**
 * A running RTP source takes more than 100 000 random, mutated and
 * unauthorised datagrams over real UDP, then a valid stream: it must stay
 * up, keep its state and memory bounded, count every datagram, and deliver
 * the valid stream intact.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { after, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { MULAW_ENCODE_TABLE } from '../../src/audio/g711.ts';
import { createSilentLogger } from '../../src/logger.ts';
import { RtpReceiver } from '../../src/sources/rtp/rtp-receiver.ts';
import { JFK_WAV, ffmpeg } from '../helpers/tools.ts';
import { CollectingHost, buildRtpPacket, joinSamples, rtpConfig } from '../helpers/rtp-test-kit.ts';

setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

const MAX_STREAMS = 16;
const VALID_SSRC = 0x0badcafe;
const MUTATED_SSRC = 0x12345678;
/** Batches of 500 datagrams sent before the heap is measured. */
const WARM_UP_BATCHES = 20;
/**
 * Heap growth allowed from the warm-up to the end of the flood, once its
 * streams have ended, in bytes. State that grew with every datagram would
 * pass it within the 100 000 datagrams that follow.
 */
const MAX_HEAP_GROWTH_BYTES = 4 * 1024 * 1024;

const sockets: Socket[] = [];
const receivers: RtpReceiver[] = [];

after(async () => {
  for (const socket of sockets) {
    socket.close();
  }
  await Promise.all(receivers.map((receiver) => receiver.close()));
});

async function bindSender(address: string): Promise<Socket> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, address, resolve));
  sockets.push(socket);
  return socket;
}

function heapUsedBytes(): number {
  collectGarbage();
  collectGarbage();
  return process.memoryUsage().heapUsed;
}

/** Copies `datagram` and damages the copy in one of several ways. */
function mutate(datagram: Buffer): Buffer {
  const copy = Buffer.from(datagram);
  switch (randomInt(6)) {
    case 0:
      for (let flips = randomInt(1, 5); flips > 0; flips--) {
        const index = randomInt(copy.length);
        copy[index] = copy[index]! ^ (1 << randomInt(8));
      }
      return copy;
    case 1:
      return copy.subarray(0, randomInt(copy.length));
    case 2:
      copy[0] = (copy[0]! & 0xc0) | randomInt(64); // random P, X and CSRC count
      return copy;
    case 3:
      copy[copy.length - 1] = randomInt(256);
      copy[0] = copy[0]! | 0x20; // padding with a random count
      return copy;
    case 4:
      copy[1] = randomInt(256); // random marker and payload type, RTCP range included
      return copy;
    default:
      return Buffer.concat([copy, randomBytes(randomInt(1, 2000))]);
  }
}

describe('rtp source under bad input', () => {
  it('survives a flood of bad datagrams', async (t) => {
    // Only the valid stream's audio is kept, as the agent's pipeline keeps none.
    const host = new CollectingHost({ retain: (alias) => alias === `flood-${VALID_SSRC}` });
    const receiver = await RtpReceiver.start({
      config: rtpConfig({
        allow_from: ['127.0.0.1'],
        max_streams: MAX_STREAMS,
        idle_end_ms: 500,
        receive_buffer_bytes: 4 * 1024 * 1024,
        payload_types: { '96': 'L16/16000/1', '111': 'opus/48000/2' },
      }),
      aliasTemplate: 'flood-{ssrc}',
      host,
      logger: createSilentLogger(),
    });
    receivers.push(receiver);
    const port = receiver.address().port;
    const allowed = await bindSender('127.0.0.1');
    const denied = await bindSender('127.0.0.2');
    let heapBeforeBytes = 0;

    let sent = 0;
    let sentDenied = 0;
    let sentRtcp = 0;
    let maxOpenStreams = 0;
    const template = (sequenceNumber: number): Buffer =>
      buildRtpPacket({
        ssrc: MUTATED_SSRC,
        payloadType: [0, 8, 9, 96, 111][sequenceNumber % 5]!,
        sequenceNumber,
        timestamp: sequenceNumber * 160,
        payload: randomBytes(160),
      });
    const sendBatch = async (datagrams: Array<{ socket: Socket; data: Buffer }>): Promise<void> => {
      await Promise.all(
        datagrams.map(
          ({ socket, data }) =>
            new Promise<void>((resolve, reject) => socket.send(data, port, '127.0.0.1', (error) => (error ? reject(error) : resolve()))),
        ),
      );
      sent += datagrams.length;
      // Wait for the receiver to catch up, so the kernel drops nothing and every count is exact.
      const deadline = Date.now() + 10_000;
      while (receiver.counters().source.datagrams < sent) {
        assert.ok(Date.now() < deadline, `receiver saw ${receiver.counters().source.datagrams} of ${sent} datagrams`);
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    };

    for (let batch = 0; batch < 220; batch++) {
      const datagrams: Array<{ socket: Socket; data: Buffer }> = [];
      for (let index = 0; index < 500; index++) {
        const kind = index % 10;
        if (kind < 3) {
          datagrams.push({ socket: allowed, data: randomBytes(randomInt(0, 1500)) });
        } else if (kind < 5) {
          const data = randomBytes(randomInt(0, 400));
          if (data.length > 0) {
            data[0] = 0x80 | (data[0]! & 0x3f);
          }
          datagrams.push({ socket: allowed, data });
        } else if (kind < 8) {
          datagrams.push({ socket: allowed, data: mutate(template(batch * 500 + index)) });
        } else if (kind === 8) {
          datagrams.push({ socket: denied, data: template(batch * 500 + index) });
          sentDenied += 1;
        } else {
          datagrams.push({ socket: allowed, data: Buffer.from([0x81, 200 + (index % 5), 0, 6, ...randomBytes(24)]) });
          sentRtcp += 1;
        }
      }
      await sendBatch(datagrams);
      maxOpenStreams = Math.max(maxOpenStreams, receiver.counters().streams.length);
      if (batch === WARM_UP_BATCHES - 1) {
        // Measured once every code path has run, so compiled code does not count as growth.
        heapBeforeBytes = heapUsedBytes();
      }
    }
    assert.ok(sent >= 100_000, `sent only ${sent} datagrams`);

    const flood = receiver.counters().source;
    assert.equal(flood.datagrams, sent);
    assert.equal(flood.notAllowed, sentDenied);
    assert.ok(flood.rtcp >= sentRtcp, `counted ${flood.rtcp} RTCP of ${sentRtcp} sent`);
    assert.equal(
      flood.notAllowed + flood.rtcp + flood.malformed + flood.unknownPayloadType + flood.packets,
      flood.datagrams,
      'every datagram is counted exactly once',
    );
    assert.ok(flood.malformed > 10_000, `only ${flood.malformed} malformed`);
    assert.ok(maxOpenStreams <= MAX_STREAMS, `${maxOpenStreams} streams were open`);

    // Junk that passed as RTP opened streams; they end once idle.
    await waitFor(() => receiver.counters().streams.length === 0, 'junk streams to end', 10_000);
    for (const stream of host.streams.values()) {
      await stream.ended;
    }
    host.streams.clear();
    const heapGrowthBytes = heapUsedBytes() - heapBeforeBytes;
    t.diagnostic(`sent ${sent} datagrams; counters ${JSON.stringify(flood)}; heap grew ${heapGrowthBytes} bytes`);
    assert.ok(heapGrowthBytes < MAX_HEAP_GROWTH_BYTES, `heap grew by ${heapGrowthBytes} bytes`);

    // A valid PCMU stream after the flood arrives intact.
    const mulaw = await ffmpeg(['-i', JFK_WAV, '-ar', '8000', '-f', 'mulaw', '-']);
    const packets: Buffer[] = [];
    for (let offset = 0, index = 0; offset < mulaw.length; offset += 160, index++) {
      packets.push(
        buildRtpPacket({
          ssrc: VALID_SSRC,
          payloadType: 0,
          sequenceNumber: 65000 + index,
          timestamp: 4294960000 + offset,
          payload: mulaw.subarray(offset, offset + 160),
        }),
      );
    }
    for (let start = 0; start < packets.length; start += 100) {
      await sendBatch(packets.slice(start, start + 100).map((data) => ({ socket: allowed, data })));
    }
    const valid = await host.opened(`flood-${VALID_SSRC}`);
    await receiver.close();
    await valid.ended;
    const samples = joinSamples(valid.blocks);
    const received = Buffer.alloc(samples.length);
    samples.forEach((sample, index) => {
      received[index] = MULAW_ENCODE_TABLE[Math.round(sample * 32768) + 32768]!;
    });
    assert.equal(received.length, mulaw.length);
    assert.ok(received.equals(mulaw), 'the valid stream differs from what was sent');
  });
});

async function waitFor(predicate: () => boolean, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

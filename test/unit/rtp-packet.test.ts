import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';

import { parseRtpDatagram, type RtpPacket } from '../../src/sources/rtp/rtp-packet.ts';
import { sequenceDelta, timestampDelta } from '../../src/sources/rtp/serial-number.ts';
import { buildRtpPacket } from '../helpers/rtp-test-kit.ts';

function parsePacket(datagram: Buffer): RtpPacket {
  const parsed = parseRtpDatagram(datagram);
  assert.equal(parsed.kind, 'rtp', `expected RTP, got ${JSON.stringify(parsed)}`);
  return (parsed as { packet: RtpPacket }).packet;
}

describe('rtp header parsing', () => {
  test('reads fixed header fields', () => {
    const payload = Buffer.from([1, 2, 3, 4]);
    const packet = parsePacket(
      buildRtpPacket({ payloadType: 8, sequenceNumber: 0xbeef, timestamp: 0xfedcba98, ssrc: 0x01020304, payload }),
    );
    assert.equal(packet.payloadType, 8);
    assert.equal(packet.marker, false);
    assert.equal(packet.sequenceNumber, 0xbeef);
    assert.equal(packet.timestamp, 0xfedcba98);
    assert.equal(packet.ssrc, 0x01020304);
    assert.deepEqual(packet.csrcs, []);
    assert.equal(packet.extensionProfile, undefined);
    assert.deepEqual([...packet.payload], [1, 2, 3, 4]);
  });

  test('reads marker bit apart from type', () => {
    const packet = parsePacket(buildRtpPacket({ payloadType: 111, marker: true }));
    assert.equal(packet.marker, true);
    assert.equal(packet.payloadType, 111);
  });

  test('skips the CSRC list', () => {
    const payload = Buffer.from([9, 9]);
    const packet = parsePacket(buildRtpPacket({ csrcs: [1, 0xffffffff, 3], payload }));
    assert.deepEqual(packet.csrcs, [1, 0xffffffff, 3]);
    assert.deepEqual([...packet.payload], [9, 9]);
  });

  test('skips the header extension', () => {
    const payload = Buffer.from([7, 7, 7]);
    const packet = parsePacket(buildRtpPacket({ csrcs: [5], extension: { profile: 0xbede, words: 3 }, payload }));
    assert.equal(packet.extensionProfile, 0xbede);
    assert.deepEqual([...packet.payload], [7, 7, 7]);
  });

  test('skips an empty header extension', () => {
    const packet = parsePacket(buildRtpPacket({ extension: { profile: 0x1000, words: 0 }, payload: Buffer.from([1]) }));
    assert.deepEqual([...packet.payload], [1]);
  });

  test('strips padding by its count byte', () => {
    const payload = Buffer.from([1, 2, 3]);
    const packet = parsePacket(buildRtpPacket({ payload, paddingBytes: 5 }));
    assert.deepEqual([...packet.payload], [1, 2, 3]);
  });

  test('accepts padding that fills the payload', () => {
    const packet = parsePacket(buildRtpPacket({ payload: Buffer.alloc(0), paddingBytes: 4 }));
    assert.equal(packet.payload.length, 0);
  });

  test('rejects a padding count of zero', () => {
    const datagram = buildRtpPacket({ payload: Buffer.from([1, 2, 3]), paddingBytes: 2 });
    datagram[datagram.length - 1] = 0;
    assert.deepEqual(parseRtpDatagram(datagram), { kind: 'malformed', reason: 'bad_padding' });
  });

  test('rejects padding longer than payload', () => {
    const datagram = buildRtpPacket({ payload: Buffer.from([1, 2, 3]), paddingBytes: 2 });
    datagram[datagram.length - 1] = 6;
    assert.deepEqual(parseRtpDatagram(datagram), { kind: 'malformed', reason: 'bad_padding' });
  });

  test('rejects padding reaching into the extension', () => {
    const datagram = buildRtpPacket({ extension: { profile: 1, words: 1 }, payload: Buffer.from([1]), paddingBytes: 1 });
    datagram[datagram.length - 1] = 3;
    assert.deepEqual(parseRtpDatagram(datagram), { kind: 'malformed', reason: 'bad_padding' });
  });

  test('rejects short datagrams', () => {
    for (const length of [0, 1, 2, 11]) {
      const datagram = buildRtpPacket().subarray(0, length);
      assert.deepEqual(parseRtpDatagram(datagram), { kind: 'malformed', reason: 'too_short' }, `length ${length}`);
    }
  });

  test('rejects versions other than 2', () => {
    for (const version of [0, 1, 3]) {
      assert.deepEqual(parseRtpDatagram(buildRtpPacket({ version })), { kind: 'malformed', reason: 'bad_version' });
    }
  });

  test('rejects a CSRC list past the end', () => {
    const datagram = buildRtpPacket({ payload: Buffer.alloc(4) });
    datagram[0] = 0x80 | 2; // two CSRCs need 8 bytes; only 4 follow the fixed header
    assert.deepEqual(parseRtpDatagram(datagram), { kind: 'malformed', reason: 'csrc_overrun' });
  });

  test('rejects an extension past the end', () => {
    const withoutRoom = buildRtpPacket({ payload: Buffer.alloc(2) });
    withoutRoom[0] = 0x90;
    assert.deepEqual(parseRtpDatagram(withoutRoom), { kind: 'malformed', reason: 'extension_overrun' });

    const tooLong = buildRtpPacket({ extension: { profile: 1, words: 1 }, payload: Buffer.alloc(8) });
    tooLong.writeUInt16BE(4, 14); // claims 16 bytes of extension data; 12 follow
    assert.deepEqual(parseRtpDatagram(tooLong), { kind: 'malformed', reason: 'extension_overrun' });
  });

  test('recognises RTCP packet types', () => {
    // SR, RR, SDES, BYE, APP, RTPFB, PSFB: the second byte is the RTCP packet type.
    for (const packetType of [200, 201, 202, 203, 204, 205, 206]) {
      const rtcp = Buffer.alloc(8);
      rtcp[0] = 0x80;
      rtcp[1] = packetType;
      rtcp.writeUInt16BE(1, 2);
      assert.deepEqual(parseRtpDatagram(rtcp), { kind: 'rtcp' }, `packet type ${packetType}`);
    }
  });

  test('never throws on random datagrams', () => {
    for (let iteration = 0; iteration < 20000; iteration++) {
      const datagram = randomBytes(iteration % 64);
      if (iteration % 2 === 0 && datagram.length > 0) {
        datagram[0] = 0x80 | (datagram[0]! & 0x3f); // version 2, so the deeper checks run
      }
      const parsed = parseRtpDatagram(datagram);
      if (parsed.kind === 'rtp') {
        const { payload } = parsed.packet;
        assert.ok(payload.byteOffset >= datagram.byteOffset + 12);
        assert.ok(payload.byteOffset + payload.length <= datagram.byteOffset + datagram.length);
      }
    }
  });
});

describe('rtp serial numbers', () => {
  test('sequence delta across wrap', () => {
    assert.equal(sequenceDelta(0, 65535), 1);
    assert.equal(sequenceDelta(65535, 0), -1);
    assert.equal(sequenceDelta(5, 65530), 11);
    assert.equal(sequenceDelta(100, 100), 0);
    assert.equal(sequenceDelta(32767, 0), 32767);
    assert.equal(sequenceDelta(32768, 0), -32768);
  });

  test('timestamp delta across wrap', () => {
    assert.equal(timestampDelta(80, 0xffffffb0), 160);
    assert.equal(timestampDelta(0xffffffb0, 80), -160);
    assert.equal(timestampDelta(0x7fffffff, 0), 0x7fffffff);
  });
});

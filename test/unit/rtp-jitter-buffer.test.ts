import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { JitterBuffer, type ReleasedPacket } from '../../src/sources/rtp/jitter-buffer.ts';
import { parseRtpDatagram, type RtpPacket } from '../../src/sources/rtp/rtp-packet.ts';
import { ManualClock, buildRtpPacket } from '../helpers/rtp-test-kit.ts';

function packet(sequenceNumber: number, timestamp = sequenceNumber * 160): RtpPacket {
  const parsed = parseRtpDatagram(buildRtpPacket({ sequenceNumber, timestamp }));
  assert.equal(parsed.kind, 'rtp');
  return (parsed as { packet: RtpPacket }).packet;
}

function setup(windowMs = 60, limits: { maxPackets?: number } = {}) {
  const clock = new ManualClock();
  const released: ReleasedPacket[] = [];
  const buffer = new JitterBuffer({ windowMs, clock, ...limits, onRelease: (entry) => released.push(entry) });
  const push = (...sequenceNumbers: number[]): void => {
    for (const sequenceNumber of sequenceNumbers) {
      buffer.push(packet(sequenceNumber));
    }
  };
  const sequence = (): number[] => released.map((entry) => entry.packet.sequenceNumber);
  return { clock, released, buffer, push, sequence };
}

describe('rtp jitter buffer', () => {
  test('passes packets in order at once', () => {
    const { push, sequence, released, buffer } = setup();
    push(10, 11, 12);
    assert.deepEqual(sequence(), [10, 11, 12]);
    assert.equal(released[0]!.discontinuity, true, 'first packet starts the sequence');
    assert.equal(released[1]!.discontinuity, false);
    assert.equal(buffer.heldPackets, 0);
    assert.equal(buffer.counters.received, 3);
    assert.equal(buffer.counters.lost, 0);
  });

  test('reorders within the window', () => {
    const { push, sequence, buffer, clock } = setup();
    push(1, 3);
    assert.deepEqual(sequence(), [1]);
    clock.advance(30);
    push(2);
    assert.deepEqual(sequence(), [1, 2, 3]);
    assert.equal(buffer.counters.reordered, 1);
    assert.equal(buffer.counters.lost, 0);
  });

  test('declares loss when the window passes', () => {
    const { push, sequence, released, buffer, clock } = setup(60);
    push(1, 4);
    clock.advance(59);
    assert.deepEqual(sequence(), [1], 'still waiting inside the window');
    clock.advance(1);
    assert.deepEqual(sequence(), [1, 4]);
    assert.equal(released[1]!.lostBefore, 2);
    assert.equal(buffer.counters.lost, 2);
  });

  test('counts late packet after loss', () => {
    const { push, sequence, buffer, clock } = setup(60);
    push(1, 3);
    clock.advance(60);
    push(2);
    assert.deepEqual(sequence(), [1, 3]);
    assert.equal(buffer.counters.late, 1);
    assert.equal(buffer.counters.duplicate, 0);
  });

  test('duplicate at the misorder limit', () => {
    const { push, buffer, clock } = setup(60);
    push(...Array.from({ length: 300 }, (_, index) => 1000 + index));
    // 1199 is 100 behind the highest packet (1299), the farthest a packet may lag.
    push(1199);
    assert.equal(buffer.counters.duplicate, 1);
    // A packet lost in a gap and arriving after the window counts as late, not as a duplicate.
    push(1301);
    clock.advance(60);
    push(1300);
    assert.equal(buffer.counters.late, 1);
    assert.equal(buffer.counters.duplicate, 1);
  });

  test('drops duplicates released and held', () => {
    const { push, sequence, buffer } = setup();
    push(1, 1, 3, 3);
    assert.deepEqual(sequence(), [1]);
    assert.equal(buffer.counters.duplicate, 2);
    push(2);
    assert.deepEqual(sequence(), [1, 2, 3]);
  });

  test('continues across sequence wrap', () => {
    const { push, sequence, buffer } = setup();
    push(65533, 65534, 65535, 0, 1);
    assert.deepEqual(sequence(), [65533, 65534, 65535, 0, 1]);
    assert.equal(buffer.counters.lost, 0);
    assert.equal(buffer.counters.discontinuities, 0);
  });

  test('reorders across sequence wrap', () => {
    const { push, sequence, buffer } = setup();
    push(65534, 0, 65535, 1);
    assert.deepEqual(sequence(), [65534, 65535, 0, 1]);
    assert.equal(buffer.counters.reordered, 1);
    assert.equal(buffer.counters.lost, 0);
  });

  test('tells late packet from wrap', () => {
    const { push, sequence, buffer, clock } = setup(60);
    push(65530, 65532);
    clock.advance(60); // 65531 is declared lost
    push(65533, 65534, 65535, 0, 1);
    push(65531); // arrives after the wrap: late, not a jump forward
    push(65534); // already released: duplicate
    assert.deepEqual(sequence(), [65530, 65532, 65533, 65534, 65535, 0, 1]);
    assert.equal(buffer.counters.late, 1);
    assert.equal(buffer.counters.duplicate, 1);
    assert.equal(buffer.counters.outOfSequence, 0);
    assert.equal(buffer.counters.discontinuities, 0);
  });

  test('restarts on a confirmed jump', () => {
    const { push, sequence, released, buffer } = setup();
    push(100, 101, 20000);
    assert.deepEqual(sequence(), [100, 101], 'a single far packet waits for confirmation');
    push(20001, 20002);
    assert.deepEqual(sequence(), [100, 101, 20000, 20001, 20002]);
    assert.equal(released[2]!.discontinuity, true);
    assert.equal(released[2]!.lostBefore, 0);
    assert.equal(buffer.counters.lost, 0, 'a restart is not thousands of lost packets');
    assert.equal(buffer.counters.discontinuities, 1);
  });

  test('restarts on a backward jump', () => {
    const { push, sequence, released, buffer } = setup();
    push(5000, 5001, 1000, 1001);
    assert.deepEqual(sequence(), [5000, 5001, 1000, 1001]);
    assert.equal(released[2]!.discontinuity, true);
    assert.equal(buffer.counters.late, 0);
    assert.equal(buffer.counters.discontinuities, 1);
  });

  test('drops an unconfirmed stray jump', () => {
    const { push, sequence, buffer } = setup();
    push(100, 101, 40000, 102, 103);
    assert.deepEqual(sequence(), [100, 101, 102, 103]);
    assert.equal(buffer.counters.outOfSequence, 1);
    assert.equal(buffer.counters.discontinuities, 0);
    assert.equal(buffer.counters.lost, 0);
  });

  test('releases gaps at once with zero window', () => {
    const { push, sequence, released, buffer } = setup(0);
    push(1, 3, 2);
    assert.deepEqual(sequence(), [1, 3]);
    assert.equal(released[1]!.lostBefore, 1);
    assert.equal(buffer.counters.late, 1);
  });

  test('caps the packets it holds', () => {
    const { push, sequence, buffer } = setup(10_000, { maxPackets: 50 });
    push(1);
    for (let sequenceNumber = 3; sequenceNumber < 100; sequenceNumber++) {
      push(sequenceNumber);
      assert.ok(buffer.heldPackets <= 50, `holds ${buffer.heldPackets} packets`);
    }
    assert.equal(sequence()[1], 3, 'the gap was given up once the buffer was full');
    assert.equal(buffer.counters.lost, 1);
  });

  test('flush releases held packets in order', () => {
    const { push, sequence, released, buffer } = setup(1000);
    push(1, 5, 3);
    buffer.flush();
    assert.deepEqual(sequence(), [1, 3, 5]);
    assert.equal(released[1]!.lostBefore, 1);
    assert.equal(released[2]!.lostBefore, 1);
    assert.equal(buffer.heldPackets, 0);
  });

  test('reset starts a new sequence', () => {
    const { push, sequence, released, buffer } = setup();
    push(1, 2);
    buffer.reset();
    push(9000, 9001);
    assert.deepEqual(sequence(), [1, 2, 9000, 9001]);
    assert.equal(released[2]!.discontinuity, true);
    assert.equal(buffer.counters.lost, 0);
    assert.equal(buffer.counters.discontinuities, 1);
  });

  test('ignores packets after stop', () => {
    const { push, sequence, buffer } = setup();
    push(1);
    buffer.stop();
    push(2);
    assert.deepEqual(sequence(), [1]);
  });
});

/**
 * Reorder buffer of one RTP sequence (one SSRC). Packets come out in
 * sequence order; a missing packet is waited for until the oldest packet
 * held behind it has waited `windowMs`, then declared lost. Packets in order
 * pass straight through, so the buffer adds delay only while there is a gap.
 *
 * Sequence numbers are extended past 16 bits with serial-number arithmetic,
 * so wrap-around is continuous. A jump of more than MAX_DROPOUT forward or
 * MAX_MISORDER back is not counted as loss: like the sender validation of
 * RFC 3550 §A.1, the buffer takes it as a restart of the sequence once the
 * next packet confirms it (sequence number + 1), and marks the first
 * released packet as a discontinuity. An unconfirmed jump is a stray packet
 * and is dropped.
 *
 * Time is read from an injected Clock, so tests drive the window.
 */
import type { Clock } from '../../clock.ts';
import type { RtpPacket } from './rtp-packet.ts';
import { sequenceDelta } from './serial-number.ts';

/** Largest forward step still taken as loss, in packets (RFC 3550 §A.1). */
export const MAX_DROPOUT = 3000;
/** Largest backward step still taken as a late or reordered packet (RFC 3550 §A.1). */
export const MAX_MISORDER = 100;

/**
 * Released sequence numbers remembered to tell a duplicate from a late
 * packet. A packet more than MAX_MISORDER behind is taken as a jump before
 * the history is read, so a little more than MAX_MISORDER is enough.
 */
const RELEASED_HISTORY = 128;

const DEFAULT_MAX_PACKETS = 512;
const DEFAULT_MAX_BUFFERED_BYTES = 1024 * 1024;

export interface ReleasedPacket {
  packet: RtpPacket;
  /** Clock time at which the packet arrived, in ms. */
  arrivalMs: number;
  /** Packets declared lost right before this one. */
  lostBefore: number;
  /** True for the first packet of a sequence: the very first one, or the first after a restart or reset. */
  discontinuity: boolean;
}

/** Packet counts of one sequence since the buffer was created. */
export interface JitterCounters {
  received: number;
  lost: number;
  /** Arrived after the buffer had given up waiting for them. */
  late: number;
  duplicate: number;
  /** Arrived after a later packet but in time to be put back in order. */
  reordered: number;
  /** Restarts of the sequence: confirmed jumps and resets. */
  discontinuities: number;
  /** Dropped because their sequence number was far from the sequence and no packet confirmed a restart. */
  outOfSequence: number;
}

export interface JitterBufferOptions {
  /** How long a packet waits for a missing earlier one, in ms; 0 releases at once. */
  windowMs: number;
  clock: Clock;
  /** Packets held at most; beyond it the oldest gap is declared lost at once. */
  maxPackets?: number;
  /** Payload bytes held at most; beyond it the oldest gap is declared lost at once. */
  maxBufferedBytes?: number;
  onRelease: (released: ReleasedPacket) => void;
}

interface HeldPacket {
  packet: RtpPacket;
  arrivalMs: number;
}

export class JitterBuffer {
  readonly counters: JitterCounters = {
    received: 0,
    lost: 0,
    late: 0,
    duplicate: 0,
    reordered: 0,
    discontinuities: 0,
    outOfSequence: 0,
  };

  private readonly options: JitterBufferOptions;
  private readonly maxPackets: number;
  private readonly maxBufferedBytes: number;
  private readonly held = new Map<number, HeldPacket>();
  private readonly releasedHistory = new Float64Array(RELEASED_HISTORY).fill(-1);
  private started = false;
  /** Extended sequence number of the highest packet accepted. */
  private highest = 0;
  /** Extended sequence number of the next packet to release. */
  private next = 0;
  private heldBytes = 0;
  private pendingLost = 0;
  private pendingDiscontinuity = true;
  /** First packet of a possible restart, waiting for its successor to confirm it. */
  private restartCandidate: HeldPacket | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(options: JitterBufferOptions) {
    this.options = options;
    this.maxPackets = options.maxPackets ?? DEFAULT_MAX_PACKETS;
    this.maxBufferedBytes = options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
  }

  /** Packets held now, waiting for a gap to fill or the window to pass. */
  get heldPackets(): number {
    return this.held.size;
  }

  get bufferedBytes(): number {
    return this.heldBytes;
  }

  /**
   * Takes one packet of this sequence; releases whatever is now in order.
   * `arrivalMs` is the packet's arrival on the buffer's clock, read now when omitted.
   */
  push(packet: RtpPacket, arrivalMs = this.options.clock.nowMs()): void {
    if (this.stopped) {
      return;
    }
    this.counters.received += 1;
    if (!this.started) {
      this.begin({ packet, arrivalMs });
      return;
    }

    const delta = sequenceDelta(packet.sequenceNumber, this.highest & 0xffff);
    if (delta >= MAX_DROPOUT || delta < -MAX_MISORDER) {
      this.onJump({ packet, arrivalMs });
      return;
    }
    if (this.restartCandidate !== undefined) {
      // The sequence went on, so the far-off packet was a stray.
      this.counters.outOfSequence += 1;
      this.restartCandidate = undefined;
    }

    const extended = this.highest + delta;
    if (extended < this.next) {
      if (this.releasedHistory[extended % RELEASED_HISTORY] === extended) {
        this.counters.duplicate += 1;
      } else {
        this.counters.late += 1;
      }
      return;
    }
    if (this.held.has(extended)) {
      this.counters.duplicate += 1;
      return;
    }
    if (extended === this.next && this.held.size === 0) {
      // The next packet with nothing held: the usual case, released without going through the map.
      this.highest = extended;
      this.release(packet, arrivalMs);
      return;
    }
    if (extended < this.highest) {
      this.counters.reordered += 1;
    } else {
      this.highest = extended;
    }
    this.hold(extended, { packet, arrivalMs });
    this.drain();
  }

  /** Releases every held packet at once, declaring the gaps between them lost. */
  flush(): void {
    this.cancelTimer();
    while (this.held.size > 0) {
      this.skipToLowestHeld();
      this.releaseInOrder();
    }
    if (this.restartCandidate !== undefined) {
      this.counters.outOfSequence += 1;
      this.restartCandidate = undefined;
    }
  }

  /**
   * Flushes, then forgets the sequence: the next packet starts a new one and
   * is released as a discontinuity. Used when the SSRC changes.
   */
  reset(): void {
    this.flush();
    if (this.started) {
      this.counters.discontinuities += 1;
    }
    this.started = false;
    this.releasedHistory.fill(-1);
    this.pendingDiscontinuity = true;
  }

  /** Cancels the release timer; later packets are ignored. Call flush() first to keep held packets. */
  stop(): void {
    this.stopped = true;
    this.cancelTimer();
  }

  private begin(first: HeldPacket): void {
    this.started = true;
    this.highest = first.packet.sequenceNumber;
    this.next = this.highest;
    this.hold(this.highest, first);
    this.drain();
  }

  private onJump(arrival: HeldPacket): void {
    const candidate = this.restartCandidate;
    if (candidate !== undefined && arrival.packet.sequenceNumber === ((candidate.packet.sequenceNumber + 1) & 0xffff)) {
      this.restartCandidate = undefined;
      this.flush();
      this.counters.discontinuities += 1;
      this.releasedHistory.fill(-1);
      this.pendingDiscontinuity = true;
      this.started = true;
      this.highest = candidate.packet.sequenceNumber + 1;
      this.next = candidate.packet.sequenceNumber;
      this.hold(this.next, candidate);
      this.hold(this.highest, arrival);
      this.drain();
      return;
    }
    if (candidate !== undefined) {
      this.counters.outOfSequence += 1;
    }
    this.restartCandidate = arrival;
  }

  private hold(extended: number, entry: HeldPacket): void {
    this.held.set(extended, entry);
    this.heldBytes += entry.packet.payload.length;
  }

  private drain(): void {
    for (;;) {
      this.releaseInOrder();
      if (this.held.size === 0) {
        this.cancelTimer();
        return;
      }
      const oldestArrivalMs = this.oldestArrivalMs();
      const waitedMs = this.options.clock.nowMs() - oldestArrivalMs;
      const overFull = this.held.size > this.maxPackets || this.heldBytes > this.maxBufferedBytes;
      if (waitedMs < this.options.windowMs && !overFull) {
        this.scheduleDrain(this.options.windowMs - waitedMs);
        return;
      }
      this.skipToLowestHeld();
    }
  }

  private releaseInOrder(): void {
    for (let entry = this.held.get(this.next); entry !== undefined; entry = this.held.get(this.next)) {
      this.held.delete(this.next);
      this.heldBytes -= entry.packet.payload.length;
      this.release(entry.packet, entry.arrivalMs);
    }
  }

  /** Releases the packet with sequence number `next`, which is not held. */
  private release(packet: RtpPacket, arrivalMs: number): void {
    this.releasedHistory[this.next % RELEASED_HISTORY] = this.next;
    this.next += 1;
    const released: ReleasedPacket = {
      packet,
      arrivalMs,
      lostBefore: this.pendingLost,
      discontinuity: this.pendingDiscontinuity,
    };
    this.pendingLost = 0;
    this.pendingDiscontinuity = false;
    this.options.onRelease(released);
  }

  /** Gives up on the packets missing before the lowest held one. */
  private skipToLowestHeld(): void {
    let lowest = Number.POSITIVE_INFINITY;
    for (const extended of this.held.keys()) {
      lowest = Math.min(lowest, extended);
    }
    if (lowest === Number.POSITIVE_INFINITY || lowest <= this.next) {
      return;
    }
    const missing = lowest - this.next;
    this.counters.lost += missing;
    this.pendingLost += missing;
    this.next = lowest;
  }

  private oldestArrivalMs(): number {
    let oldest = Number.POSITIVE_INFINITY;
    for (const entry of this.held.values()) {
      oldest = Math.min(oldest, entry.arrivalMs);
    }
    return oldest;
  }

  private scheduleDrain(delayMs: number): void {
    this.cancelTimer();
    this.timer = this.options.clock.setTimeout(() => {
      this.timer = undefined;
      this.drain();
    }, Math.max(1, Math.ceil(delayMs)));
  }

  private cancelTimer(): void {
    if (this.timer !== undefined) {
      this.options.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
  }
}

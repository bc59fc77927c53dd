/**
 * Validation of new SSRCs before they may open a stream or take over one:
 * like the source validation of RFC 3550 §A.1 (MIN_SEQUENTIAL = 2), an SSRC
 * counts once two of its packets arrive with consecutive sequence numbers.
 * A stray or forged packet with a random SSRC therefore never opens a
 * stream. The first packet is held, not lost: both are handed over.
 *
 * Candidates are bounded in number and age, so a flood of random SSRCs
 * costs a fixed amount of memory.
 */
import type { RtpPacket } from './rtp-packet.ts';

/** SSRCs on probation at most; the oldest is forgotten beyond it. */
const MAX_CANDIDATES = 64;

/** A candidate whose second packet does not come within this time is forgotten, in ms. */
const CANDIDATE_TIMEOUT_MS = 2000;

interface Candidate {
  packet: RtpPacket;
  arrivalMs: number;
}

export class SsrcProbation {
  /** Packets of SSRCs that were forgotten before a second packet confirmed them. */
  unconfirmed = 0;
  private readonly candidates = new Map<number, Candidate>();

  get size(): number {
    return this.candidates.size;
  }

  /** Takes a packet of an SSRC that has no stream; returns the packets to hand over once the SSRC is confirmed. */
  offer(packet: RtpPacket, nowMs: number): RtpPacket[] | undefined {
    this.expire(nowMs);
    const candidate = this.candidates.get(packet.ssrc);
    if (candidate !== undefined) {
      this.candidates.delete(packet.ssrc);
      if (packet.sequenceNumber === ((candidate.packet.sequenceNumber + 1) & 0xffff)) {
        return [candidate.packet, packet];
      }
      this.unconfirmed += 1;
    } else if (this.candidates.size >= MAX_CANDIDATES) {
      const oldest = this.candidates.keys().next();
      if (oldest.done !== true) {
        this.candidates.delete(oldest.value);
        this.unconfirmed += 1;
      }
    }
    // Re-inserting keeps the map in arrival order, oldest first.
    this.candidates.set(packet.ssrc, { packet, arrivalMs: nowMs });
    return undefined;
  }

  /** Forgets an SSRC, such as one that just got a stream by another path. */
  forget(ssrc: number): void {
    this.candidates.delete(ssrc);
  }

  private expire(nowMs: number): void {
    for (const [ssrc, candidate] of this.candidates) {
      if (nowMs - candidate.arrivalMs < CANDIDATE_TIMEOUT_MS) {
        return;
      }
      this.candidates.delete(ssrc);
      this.unconfirmed += 1;
    }
  }
}

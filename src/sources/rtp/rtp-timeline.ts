/**
 * Timeline of one RTP stream: turns the RTP timestamps of packets released
 * in sequence order into positions on the stream's own clock, and decides
 * how much to fill before each packet.
 *
 * - Packets lost in transit (`lostBefore`) become audio of the same length:
 *   concealment where the codec has it, silence otherwise. This is always
 *   done, so the stream keeps its length.
 * - A timestamp gap with no packet lost is silence the sender did not send
 *   (between talkspurts, RFC 3551 §4.1). It is filled when `fillGaps` is on,
 *   so results keep wall-clock alignment.
 * - Every fill is capped at `maxGapFillMs`, and all fills together may not
 *   get ahead of the wall clock by more than FILL_BURST_MS, so a sender
 *   that makes up timestamps cannot make the agent generate hours of audio.
 * - A discontinuity (a new sequence, another SSRC, a clock change, a
 *   timestamp jump the arrival times contradict) is bridged by the time
 *   that passed between arrivals, filled under the same rules as a talkspurt
 *   gap.
 *
 * Positions are counted in sample frames at the stream's sample rate.
 */
import type { ReleasedPacket } from './jitter-buffer.ts';
import { timestampDelta } from './serial-number.ts';

/** Fill that may run ahead of the wall clock, in ms: covers bursts after a stalled network. */
const FILL_BURST_MS = 2000;

/** Timestamps that go back by more than this are a discontinuity, not jitter, in ms. */
const MAX_BACKWARD_STEP_MS = 500;

/** A timestamp gap this much longer than the arrival gap is not believed, in ms (plus the jitter window). */
const ARRIVAL_SLACK_MS = 1000;

/** Longest stretch of lost audio that codec concealment fills; silence follows, in ms. */
const MAX_CONCEALMENT_MS = 200;

export type DiscontinuityReason = 'first' | 'sequence' | 'clock_rate' | 'timestamp_jump';

export interface TimelineOptions {
  /** Sample rate of the blocks the stream emits, in Hz. */
  sampleRateHz: number;
  fillGaps: boolean;
  maxGapFillMs: number;
  /** Reorder window of the jitter buffer, in ms; arrival times may be off by this much. */
  jitterMs: number;
}

/** What to do before and with one audio packet. */
export interface TimelineStep {
  /** Frames to emit before the packet's audio: concealment first, then silence. */
  fillFrames: number;
  /** Frames at the start of the fill to take from codec concealment. */
  concealFrames: number;
  /** Position of the first fill frame, in frames from the start of the stream. */
  fillStartFrame: number;
  /** Position of the packet's first frame, in frames from the start of the stream. */
  packetStartFrame: number;
  /** Set when the packet starts a new stretch of the timeline. */
  discontinuity: DiscontinuityReason | undefined;
}

export class RtpTimeline {
  private readonly options: TimelineOptions;
  private started = false;
  private positionFrames = 0;
  private expectedTimestamp = 0;
  private clockRateHz = 0;
  private lastArrivalMs = 0;
  private lastDurationMs = 0;
  private fillBudgetMs = FILL_BURST_MS;
  private budgetUpdatedMs: number | undefined;
  /** Result of step(), reused because step() runs for every packet. */
  private readonly plan: TimelineStep = {
    fillFrames: 0,
    concealFrames: 0,
    fillStartFrame: 0,
    packetStartFrame: 0,
    discontinuity: undefined,
  };

  constructor(options: TimelineOptions) {
    this.options = options;
  }

  /** Position of the next frame, in frames from the start of the stream. */
  get position(): number {
    return this.positionFrames;
  }

  /**
   * Plans one packet and moves the position past it. `lostBefore` counts the
   * packets missing just before it, `durationTicks` is its length in RTP
   * clock ticks and `packetFrames` its decoded length at the stream rate.
   * The returned plan is overwritten by the next call.
   */
  step(released: ReleasedPacket, lostBefore: number, clockRateHz: number, durationTicks: number, packetFrames: number): TimelineStep {
    const { packet, arrivalMs } = released;
    this.accrueBudget(arrivalMs);

    let gapMs = 0;
    let lossMs = 0;
    let discontinuity: DiscontinuityReason | undefined;
    if (!this.started) {
      discontinuity = 'first';
      this.started = true;
    } else if (released.discontinuity) {
      discontinuity = 'sequence';
    } else if (clockRateHz !== this.clockRateHz) {
      discontinuity = 'clock_rate';
    } else {
      const gapTicks = timestampDelta(packet.timestamp, this.expectedTimestamp);
      gapMs = (gapTicks * 1000) / clockRateHz;
      const arrivalGapMs = arrivalMs - this.lastArrivalMs;
      if (gapMs < -MAX_BACKWARD_STEP_MS || gapMs > arrivalGapMs + ARRIVAL_SLACK_MS + this.options.jitterMs) {
        discontinuity = 'timestamp_jump';
      } else if (gapMs > 0) {
        lossMs = Math.min(gapMs, lostBefore * this.lastDurationMs);
      } else {
        // A small overlap or a step back is jitter of the sender's clock: play on.
        gapMs = 0;
      }
    }

    let fillMs = 0;
    if (discontinuity === 'first') {
      gapMs = 0;
    } else if (discontinuity !== undefined) {
      // Bridge the time between the end of the last packet and this arrival.
      gapMs = Math.max(0, arrivalMs - this.lastArrivalMs - this.lastDurationMs);
      fillMs = this.options.fillGaps ? gapMs : 0;
    } else {
      fillMs = lossMs + (this.options.fillGaps ? gapMs - lossMs : 0);
    }
    fillMs = Math.min(fillMs, this.options.maxGapFillMs, this.fillBudgetMs);
    this.fillBudgetMs -= fillMs;

    const rate = this.options.sampleRateHz;
    const fillFrames = Math.round((fillMs * rate) / 1000);
    const concealFrames = Math.min(fillFrames, Math.round((Math.min(lossMs, MAX_CONCEALMENT_MS) * rate) / 1000));
    const fillStartFrame = this.positionFrames;
    // The position moves by the whole gap even when less is filled, so block
    // timestamps stay on the sender's clock.
    const gapFrames = Math.max(fillFrames, Math.round((gapMs * rate) / 1000));
    const packetStartFrame = fillStartFrame + gapFrames;
    this.positionFrames = packetStartFrame + packetFrames;

    this.clockRateHz = clockRateHz;
    this.expectedTimestamp = (packet.timestamp + durationTicks) >>> 0;
    this.lastArrivalMs = arrivalMs;
    this.lastDurationMs = (durationTicks * 1000) / clockRateHz;
    const plan = this.plan;
    plan.fillFrames = fillFrames;
    plan.concealFrames = concealFrames;
    plan.fillStartFrame = fillStartFrame;
    plan.packetStartFrame = packetStartFrame;
    plan.discontinuity = discontinuity;
    return plan;
  }

  private accrueBudget(nowMs: number): void {
    if (this.budgetUpdatedMs !== undefined) {
      const elapsedMs = Math.max(0, nowMs - this.budgetUpdatedMs);
      this.fillBudgetMs = Math.min(this.fillBudgetMs + elapsedMs, this.options.maxGapFillMs + FILL_BURST_MS);
    }
    // Arrival times of reordered packets can step back; the budget only moves forward.
    this.budgetUpdatedMs = Math.max(this.budgetUpdatedMs ?? nowMs, nowMs);
  }
}

import { Readable } from 'node:stream';

import type { PcmBlock } from '../audio/format.ts';
import { systemClock, type Clock } from '../clock.ts';
import type { ToneSourceConfig } from '../config/types.ts';
import { createSilentLogger, type Logger } from '../logger.ts';
import type { AudioSource } from './audio-source.ts';

export interface ToneSourceOptions {
  logger?: Logger;
  clock?: Clock;
}

/** Audio per block, in milliseconds, the period of a typical capture callback. */
const BLOCK_MS = 20;

/** Channel c plays the base frequency times 1 + 0.05 c, so that channels are distinguishable. */
const CHANNEL_FREQUENCY_STEP = 0.05;

/** Bursts and pauses of the speech-like envelope, in milliseconds, near syllable and phrase lengths. */
const BURST_MS = { min: 200, max: 400 };
const PAUSE_MS = { min: 150, max: 300 };
/** Raised-cosine fade at each end of a burst, so bursts start and stop without clicks. */
const FADE_MS = 10;
/** Seed of the envelope's pseudo-random lengths, fixed so every run produces the same audio. */
const ENVELOPE_SEED = 0x5eed1e55;

/**
 * A generated sine tone as a live audio source: an object-mode Readable of
 * 20 ms `PcmBlock`s produced on a real-time schedule from the first read.
 * Being live, it pushes every block when it is due whether or not the
 * consumer keeps up; whatever consumes it must buffer. Each block is
 * produced when its last sample is due, and the schedule counts samples
 * from the start, so timer delays do not accumulate.
 */
export class ToneSource implements AudioSource {
  readonly kind = 'tone';
  readonly live = true;
  readonly readable: Readable;
  readonly format: { sampleRateHz: number; channels: number };
  /** Frequency of each channel, in Hz. */
  readonly channelFrequenciesHz: readonly number[];

  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly amplitude: number;
  private readonly totalFrames: number;
  private readonly blockFrames: number;
  private readonly envelope: SpeechEnvelope | undefined;
  /** Phase of each channel, in cycles within [0, 1). */
  private readonly phases: Float64Array;
  private readonly phaseSteps: Float64Array;
  private emittedFrames = 0;
  private scheduleStartMs: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private ended = false;

  constructor(config: ToneSourceConfig, options: ToneSourceOptions = {}) {
    this.log = options.logger ?? createSilentLogger();
    this.clock = options.clock ?? systemClock;
    this.format = { sampleRateHz: config.sample_rate_hz, channels: config.channels };
    this.amplitude = 10 ** (config.level_dbfs / 20);
    this.totalFrames =
      config.duration_ms === undefined
        ? Number.POSITIVE_INFINITY
        : Math.round((config.duration_ms * config.sample_rate_hz) / 1000);
    this.blockFrames = Math.max(1, Math.round((config.sample_rate_hz * BLOCK_MS) / 1000));
    this.envelope = config.speech_like ? new SpeechEnvelope(config.sample_rate_hz) : undefined;
    this.channelFrequenciesHz = Array.from({ length: config.channels }, (_, channel) => {
      const frequencyHz = config.frequency_hz * (1 + CHANNEL_FREQUENCY_STEP * channel);
      // A shifted frequency at or above Nyquist would alias, so that channel keeps the base frequency.
      return frequencyHz < config.sample_rate_hz / 2 ? frequencyHz : config.frequency_hz;
    });
    this.phases = new Float64Array(config.channels);
    this.phaseSteps = Float64Array.from(this.channelFrequenciesHz, (hz) => hz / config.sample_rate_hz);
    this.readable = new Readable({
      objectMode: true,
      read: () => this.start(),
      destroy: (error, callback) => {
        this.cancelTimer();
        this.ended = true;
        callback(error);
      },
    });
  }

  /** Stops the tone; the Readable ends after the blocks already pushed. */
  stop(): void {
    this.end();
  }

  /** Starts the schedule on the first read; later reads change nothing because a live source ignores backpressure. */
  private start(): void {
    if (this.scheduleStartMs !== undefined || this.ended) {
      return;
    }
    this.scheduleStartMs = this.clock.nowMs();
    this.log.info(
      {
        frequenciesHz: this.channelFrequenciesHz,
        sampleRateHz: this.format.sampleRateHz,
        channels: this.format.channels,
        speechLike: this.envelope !== undefined,
        durationMs: Number.isFinite(this.totalFrames) ? (this.totalFrames * 1000) / this.format.sampleRateHz : null,
      },
      'tone source started',
    );
    this.scheduleNext();
  }

  /** Pushes every block that is due by now, then sets a timer for the next. */
  private tick(): void {
    this.timer = undefined;
    const startMs = this.scheduleStartMs ?? 0;
    while (!this.ended && this.emittedFrames < this.totalFrames) {
      const frames = Math.min(this.blockFrames, this.totalFrames - this.emittedFrames);
      const dueMs = startMs + ((this.emittedFrames + frames) * 1000) / this.format.sampleRateHz;
      if (this.clock.nowMs() < dueMs) {
        break;
      }
      this.readable.push(this.generateBlock(frames));
    }
    if (this.emittedFrames >= this.totalFrames) {
      this.end();
      return;
    }
    this.scheduleNext();
  }

  private scheduleNext(): void {
    if (this.ended) {
      return;
    }
    const frames = Math.min(this.blockFrames, this.totalFrames - this.emittedFrames);
    const dueMs =
      (this.scheduleStartMs ?? 0) + ((this.emittedFrames + frames) * 1000) / this.format.sampleRateHz;
    const delayMs = Math.max(0, Math.ceil(dueMs - this.clock.nowMs()));
    this.timer = this.clock.setTimeout(() => this.tick(), delayMs);
  }

  private generateBlock(frames: number): PcmBlock {
    const channels = this.format.channels;
    const samples = new Float32Array(frames * channels);
    const startFrame = this.emittedFrames;
    for (let frame = 0; frame < frames; frame++) {
      const gain = this.amplitude * (this.envelope === undefined ? 1 : this.envelope.next());
      for (let channel = 0; channel < channels; channel++) {
        const phase = this.phases[channel]!;
        samples[frame * channels + channel] = gain * Math.sin(2 * Math.PI * phase);
        // The phase wraps each cycle so that its precision does not decay over days of output.
        const nextPhase = phase + this.phaseSteps[channel]!;
        this.phases[channel] = nextPhase >= 1 ? nextPhase - 1 : nextPhase;
      }
    }
    this.emittedFrames += frames;
    return {
      samples,
      sampleRateHz: this.format.sampleRateHz,
      channels,
      timestampMs: (startFrame * 1000) / this.format.sampleRateHz,
    };
  }

  private end(): void {
    if (this.ended) {
      return;
    }
    this.ended = true;
    this.cancelTimer();
    this.log.info(
      { emittedMs: Math.round((this.emittedFrames * 1000) / this.format.sampleRateHz) },
      'tone source ended',
    );
    this.readable.push(null);
  }

  private cancelTimer(): void {
    if (this.timer !== undefined) {
      this.clock.clearTimeout(this.timer);
      this.timer = undefined;
    }
  }
}

/**
 * Gain of the speech-like envelope, one sample at a time: bursts of 200 to
 * 400 ms at full level with faded edges, separated by 150 to 300 ms of
 * silence. A seeded generator draws the lengths, so the pattern repeats
 * from run to run.
 */
class SpeechEnvelope {
  private readonly sampleRateHz: number;
  private readonly fadeFrames: number;
  private readonly random: () => number;
  private inBurst = true;
  private segmentFrames: number;
  private position = 0;

  constructor(sampleRateHz: number) {
    this.sampleRateHz = sampleRateHz;
    this.fadeFrames = Math.max(1, Math.round((sampleRateHz * FADE_MS) / 1000));
    this.random = mulberry32(ENVELOPE_SEED);
    this.segmentFrames = this.drawFrames(BURST_MS);
  }

  next(): number {
    if (this.position >= this.segmentFrames) {
      this.inBurst = !this.inBurst;
      this.position = 0;
      this.segmentFrames = this.drawFrames(this.inBurst ? BURST_MS : PAUSE_MS);
    }
    const position = this.position;
    this.position += 1;
    if (!this.inBurst) {
      return 0;
    }
    const edgeFrames = Math.min(position, this.segmentFrames - 1 - position);
    if (edgeFrames >= this.fadeFrames) {
      return 1;
    }
    return 0.5 - 0.5 * Math.cos((Math.PI * edgeFrames) / this.fadeFrames);
  }

  private drawFrames(range: { min: number; max: number }): number {
    const durationMs = range.min + (range.max - range.min) * this.random();
    return Math.round((durationMs * this.sampleRateHz) / 1000);
  }
}

/** Mulberry32, a small seeded generator of uniform numbers in [0, 1); not for cryptography. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let value = state;
    value = Math.imul(value ^ (value >>> 15), value | 1);
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61);
    return ((value ^ (value >>> 14)) >>> 0) / 4294967296;
  };
}

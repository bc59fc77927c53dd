/**
 * Signal measurements over consecutive intervals of one audio stream: RMS and
 * peak level, and the parts where a plain energy detector finds activity.
 * These are the only facts the emulator can report about audio it cannot analyse.
 *
 * Levels are in dBFS relative to a full-scale square wave, so a full-scale
 * sine measures -3.01 dBFS RMS. Times are milliseconds from the start of the
 * stream, counted across reconnections.
 */

/** Length of one energy-detector window. */
const ACTIVITY_WINDOW_MS = 20;

/** A window whose RMS level reaches this is active. -45 dBFS sits well above a quiet room and below speech. */
export const ACTIVITY_THRESHOLD_DBFS = -45;

/** Level reported for digital silence, where the logarithm has no finite value. */
export const SILENCE_FLOOR_DBFS = -120;

export interface ActiveSegment {
  startMs: number;
  endMs: number;
}

export interface LevelMeasurement {
  startMs: number;
  durationMs: number;
  rmsDbfs: number;
  peakDbfs: number;
  activeMs: number;
  activeSegments: ActiveSegment[];
}

function toDbfs(linear: number): number {
  if (linear <= 0) {
    return SILENCE_FLOOR_DBFS;
  }
  const dbfs = 20 * Math.log10(linear);
  return Math.max(SILENCE_FLOOR_DBFS, Math.round(dbfs * 100) / 100);
}

const ACTIVITY_THRESHOLD_LINEAR = 10 ** (ACTIVITY_THRESHOLD_DBFS / 20);

export class LevelMeter {
  private readonly sampleRateHz: number;
  private readonly channels: number;
  private readonly intervalFrames: number;
  private readonly windowFrames: number;

  /** Sample frames consumed since the stream started. */
  private totalFrames = 0;

  private intervalStartFrame = 0;
  private intervalFrameCount = 0;
  private intervalSumSquares = 0;
  private intervalPeak = 0;
  private intervalActiveFrames = 0;
  private intervalSegments: Array<{ startFrame: number; endFrame: number }> = [];

  private windowStartFrame = 0;
  private windowFrameCount = 0;
  private windowSumSquares = 0;
  private openSegmentStartFrame: number | undefined;

  constructor(options: { sampleRateHz: number; channels: number; intervalMs: number }) {
    this.sampleRateHz = options.sampleRateHz;
    this.channels = options.channels;
    this.intervalFrames = Math.max(1, Math.round((options.sampleRateHz * options.intervalMs) / 1000));
    this.windowFrames = Math.max(1, Math.round((options.sampleRateHz * ACTIVITY_WINDOW_MS) / 1000));
  }

  /** Milliseconds of audio consumed so far. */
  get durationMs(): number {
    return this.framesToMs(this.totalFrames);
  }

  /**
   * Consumes interleaved samples (whole sample frames) and returns the
   * measurement of every interval they complete.
   */
  push(samples: Float32Array): LevelMeasurement[] {
    const completed: LevelMeasurement[] = [];
    const frameCount = Math.floor(samples.length / this.channels);
    for (let frame = 0; frame < frameCount; frame += 1) {
      let frameSumSquares = 0;
      for (let channel = 0; channel < this.channels; channel += 1) {
        const sample = samples[frame * this.channels + channel] ?? 0;
        frameSumSquares += sample * sample;
        const magnitude = Math.abs(sample);
        if (magnitude > this.intervalPeak) {
          this.intervalPeak = magnitude;
        }
      }
      this.intervalSumSquares += frameSumSquares;
      this.windowSumSquares += frameSumSquares;
      this.intervalFrameCount += 1;
      this.windowFrameCount += 1;
      this.totalFrames += 1;

      if (this.windowFrameCount === this.windowFrames) {
        this.closeWindow();
      }
      if (this.intervalFrameCount === this.intervalFrames) {
        completed.push(this.closeInterval());
      }
    }
    return completed;
  }

  /** Returns the measurement of the incomplete interval, if it contains any audio, and starts a new one. */
  flush(): LevelMeasurement | undefined {
    if (this.intervalFrameCount === 0) {
      return undefined;
    }
    return this.closeInterval();
  }

  private closeWindow(): void {
    if (this.windowFrameCount === 0) {
      return;
    }
    const rms = Math.sqrt(this.windowSumSquares / (this.windowFrameCount * this.channels));
    if (rms >= ACTIVITY_THRESHOLD_LINEAR) {
      this.intervalActiveFrames += this.windowFrameCount;
      this.openSegmentStartFrame ??= this.windowStartFrame;
    } else if (this.openSegmentStartFrame !== undefined) {
      this.intervalSegments.push({ startFrame: this.openSegmentStartFrame, endFrame: this.windowStartFrame });
      this.openSegmentStartFrame = undefined;
    }
    this.windowStartFrame = this.totalFrames;
    this.windowFrameCount = 0;
    this.windowSumSquares = 0;
  }

  private closeInterval(): LevelMeasurement {
    // A window cut short by the interval's end still counts, and a segment
    // still open is split at the boundary, so each interval is complete on its own.
    this.closeWindow();
    if (this.openSegmentStartFrame !== undefined) {
      this.intervalSegments.push({ startFrame: this.openSegmentStartFrame, endFrame: this.totalFrames });
      this.openSegmentStartFrame = undefined;
    }
    const measurement: LevelMeasurement = {
      startMs: this.framesToMs(this.intervalStartFrame),
      durationMs: this.framesToMs(this.intervalStartFrame + this.intervalFrameCount) - this.framesToMs(this.intervalStartFrame),
      rmsDbfs: toDbfs(Math.sqrt(this.intervalSumSquares / (this.intervalFrameCount * this.channels))),
      peakDbfs: toDbfs(this.intervalPeak),
      activeMs: this.framesToMs(this.intervalActiveFrames),
      activeSegments: this.intervalSegments.map((segment) => ({
        startMs: this.framesToMs(segment.startFrame),
        endMs: this.framesToMs(segment.endFrame),
      })),
    };
    this.intervalStartFrame = this.totalFrames;
    this.intervalFrameCount = 0;
    this.intervalSumSquares = 0;
    this.intervalPeak = 0;
    this.intervalActiveFrames = 0;
    this.intervalSegments = [];
    return measurement;
  }

  private framesToMs(frames: number): number {
    return Math.round((frames * 1000) / this.sampleRateHz);
  }
}

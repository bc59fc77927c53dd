import type { Result } from '../jobs/protocol.ts';
import { ACTIVITY_THRESHOLD_DBFS, type LevelMeasurement } from './level-meter.ts';

/**
 * Results of the emulator. It cannot run any analysis, so every requested
 * analysis gets the same signal measurements, marked `emulated: true`, in
 * place of the real analysis output.
 */

/** Builds one result per analysis from a level measurement of `alias`. */
export function buildMeasuredResults(alias: string, analyses: readonly string[], measurement: LevelMeasurement): Result[] {
  return analyses.map((analysis) => ({
    alias,
    analysis,
    start_ms: measurement.startMs,
    duration_ms: measurement.durationMs,
    data: {
      emulated: true,
      level_known: true,
      rms_dbfs: measurement.rmsDbfs,
      peak_dbfs: measurement.peakDbfs,
      activity_threshold_dbfs: ACTIVITY_THRESHOLD_DBFS,
      active_ms: measurement.activeMs,
      active_segments: measurement.activeSegments.map((segment) => ({
        start_ms: segment.startMs,
        end_ms: segment.endMs,
      })),
    },
  }));
}

/**
 * Builds one result per analysis for audio the emulator cannot decode
 * (container formats on streams, media files other than WAV): only the byte
 * count is known, so start and duration are 0.
 */
export function buildUnmeasuredResults(
  alias: string,
  analyses: readonly string[],
  details: { audioFormat: string; receivedBytes: number; filename?: string },
): Result[] {
  return analyses.map((analysis) => ({
    alias,
    analysis,
    start_ms: 0,
    duration_ms: 0,
    data: {
      emulated: true,
      level_known: false,
      audio_format: details.audioFormat,
      received_bytes: details.receivedBytes,
      ...(details.filename === undefined ? {} : { filename: details.filename }),
    },
  }));
}

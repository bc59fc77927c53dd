/**
 * The benchmark report: every measurement as measured, the medians per
 * subject and stream count, and the ratios of each agent subject to its
 * baseline relay. Ratios are taken within one run (same stream count, same
 * minutes of machine load) and their median is reported, because the
 * machines this runs on are shared and their speed drifts.
 */
import type { Measurement } from './measurement.ts';
import type { MachineInfo } from './proc-stats.ts';
import { linearSlope, median, round } from './statistics.ts';
import { SUBJECTS } from './subjects.ts';

/** Run time plus run-queue wait of a subject that wanted its whole CPU, in % of the window. */
export const SATURATED_PERCENT = 90;

/** Smallest baseline RSS per stream that a ratio is taken to, in KiB. */
const MIN_BASELINE_RSS_KIB = 16;

/** CPU of generator and sink together above which they may delay what they measure, in % of their one CPU. */
const LOAD_NEAR_LIMIT_PERCENT = 85;

export interface BenchSettingsRecord {
  command: string;
  streams: number[];
  windowSeconds: number;
  runs: number;
  subjects: string[];
  rampPerSecond: number;
  settleSeconds: number;
  phases: number;
  lateMarginMs: number;
  maxWaitPercent: number;
  attempts: number;
  pinning: { subject: string; load: string } | undefined;
  audio: string;
}

export interface SummaryRow {
  subject: string;
  streams: number;
  /** Measurements without an error. */
  runs: number;
  /**
   * True when the subject wanted its whole CPU in the median run (run time
   * plus run-queue wait of at least 90 % of the window): it could not keep
   * up, so its CPU per stream is a floor, not its cost.
   */
  saturated: boolean;
  /**
   * True when the subject kept up: not saturated, at least 99 % of the
   * expected frames in the window, and under 1 % of them late (a few late
   * frames come from other processes on a shared machine).
   */
  keptUp: boolean;
  /** Measurements taken in all, counting the ones repeated because the subject waited for a CPU. */
  attempts: number;
  cpuPercent: number;
  /** Part of cpuPercent spent in the kernel, in % of one core. */
  systemCpuPercent: number;
  idleCpuPercent: number;
  microsPerStreamSecond: number;
  /** Median over runs of this subject's CPU divided by its baseline's in the same run. */
  cpuRatio: number | undefined;
  idleRssKiB: number;
  steadyRssKiB: number;
  perStreamKiB: number;
  perStreamRssRatio: number | undefined;
  driftKiBPerMinute: number;
  frames: number;
  expectedFrames: number;
  p50Ms: number;
  p99Ms: number;
  /** Largest latency of any run. */
  maxMs: number;
  /** Median over runs of this subject's p99 minus its baseline's, in ms. */
  p99OverBaselineMs: number | undefined;
  /** Late frames summed over runs. */
  late: number;
  /** Median over runs of the time from the last stream's start until frames stopped being late, in ms. */
  catchUpMs: number;
  generatorPercent: number;
  /** Time the subject's main thread waited for a CPU held by another process, in % of the window. */
  subjectWaitPercent: number;
  generatorWaitPercent: number;
  /** Worst generator tick lag of any run, in ms. */
  tickLagMaxMs: number;
  tickLagP99Ms: number;
  sinkPercent: number;
  udpDrops: number;
  shutdownMs: number;
  /** Errors and non-zero exit codes, one line per affected run. */
  problems: string[];
}

export interface BenchReport {
  startedAt: string;
  finishedAt: string | undefined;
  machine: MachineInfo;
  /** Commit of the agent measured, and the files under src/ changed from it when the run started. */
  source: { commit: string; changedSourceFiles: string[] };
  settings: BenchSettingsRecord;
  summary: SummaryRow[];
  measurements: Measurement[];
}

export function summarize(measurements: Measurement[]): SummaryRow[] {
  const keys = new Map<string, { subject: string; streams: number }>();
  for (const { subject, streams } of measurements) {
    keys.set(`${subject}/${streams}`, { subject, streams });
  }
  const rows: SummaryRow[] = [];
  for (const { subject, streams } of keys.values()) {
    const all = measurements.filter((entry) => entry.subject === subject && entry.streams === streams);
    const ok = all.filter((entry) => entry.error === undefined);
    const baselineName = SUBJECTS[subject]?.baseline;
    const baselineOf = (entry: Measurement): Measurement | undefined =>
      measurements.find(
        (other) => other.subject === baselineName && other.streams === streams && other.run === entry.run && other.error === undefined,
      );
    const ratio = (pick: (entry: Measurement) => number, minBaseline = Number.MIN_VALUE): number | undefined => {
      if (baselineName === undefined) {
        return undefined;
      }
      const ratios = ok.flatMap((entry) => {
        const baseline = baselineOf(entry);
        // A baseline near zero (RSS per stream of the relay at few streams is within heap noise) gives no ratio.
        return baseline === undefined || !(pick(baseline) >= minBaseline) ? [] : [pick(entry) / pick(baseline)];
      });
      return ratios.length === 0 ? undefined : round(median(ratios), 2);
    };
    const p99Differences = ok.flatMap((entry) => {
      const baseline = baselineOf(entry);
      return baseline === undefined ? [] : [entry.latency.p99Ms - baseline.latency.p99Ms];
    });
    const medianOf = (pick: (entry: Measurement) => number, digits = 1): number => round(median(ok.map(pick)), digits);
    rows.push({
      subject,
      streams,
      runs: ok.length,
      saturated: median(ok.map((entry) => entry.cpu.subjectPercent + entry.cpu.subjectRunQueueWaitPercent)) >= SATURATED_PERCENT,
      attempts: all.reduce((sum, entry) => sum + entry.attempts, 0),
      cpuPercent: medianOf((entry) => entry.cpu.subjectPercent),
      systemCpuPercent: medianOf((entry) => entry.cpu.subjectSystemPercent),
      idleCpuPercent: medianOf((entry) => entry.cpu.idlePercent),
      microsPerStreamSecond: medianOf((entry) => entry.cpu.subjectMicrosPerStreamSecond),
      cpuRatio: ratio((entry) => entry.cpu.subjectPercent),
      idleRssKiB: medianOf((entry) => entry.memory.idleRssKiB, 0),
      steadyRssKiB: medianOf((entry) => entry.memory.steadyRssKiB, 0),
      perStreamKiB: medianOf((entry) => entry.memory.perStreamKiB),
      perStreamRssRatio: ratio((entry) => entry.memory.perStreamKiB, MIN_BASELINE_RSS_KIB),
      driftKiBPerMinute: medianOf((entry) => entry.memory.driftKiBPerMinute),
      frames: medianOf((entry) => entry.latency.frames, 0),
      expectedFrames: medianOf((entry) => entry.latency.expectedFrames, 0),
      p50Ms: medianOf((entry) => entry.latency.p50Ms, 2),
      p99Ms: medianOf((entry) => entry.latency.p99Ms, 2),
      maxMs: round(Math.max(...ok.map((entry) => entry.latency.maxMs)), 2),
      p99OverBaselineMs: baselineName === undefined || p99Differences.length === 0 ? undefined : round(median(p99Differences), 2),
      late: ok.reduce((sum, entry) => sum + entry.latency.late, 0),
      catchUpMs: medianOf((entry) => entry.latency.catchUpMs, 0),
      generatorPercent: medianOf((entry) => entry.cpu.generatorPercent),
      subjectWaitPercent: medianOf((entry) => entry.cpu.subjectRunQueueWaitPercent),
      generatorWaitPercent: medianOf((entry) => entry.cpu.generatorRunQueueWaitPercent),
      tickLagMaxMs: round(Math.max(...ok.map((entry) => entry.load.tickLagMaxMs)), 2),
      tickLagP99Ms: medianOf((entry) => entry.load.tickLagP99Ms, 2),
      sinkPercent: medianOf((entry) => entry.cpu.sinkPercent),
      udpDrops: ok.reduce((sum, entry) => sum + entry.load.udpDrops, 0),
      shutdownMs: medianOf((entry) => entry.shutdown.durationMs, 0),
      problems: all.flatMap((entry) => problemsOf(entry)),
      keptUp: false,
    });
    const row = rows[rows.length - 1]!;
    const windowFrames = row.frames * row.runs;
    row.keptUp = !row.saturated && row.frames >= 0.99 * row.expectedFrames && row.late < 0.01 * windowFrames;
  }
  return rows.sort((a, b) => a.streams - b.streams || subjectOrder(a.subject) - subjectOrder(b.subject));
}

/**
 * Marginal RSS of each subject per stream: the least-squares slope of its
 * median steady RSS over the stream counts where it kept up, in KiB. Unlike (steady - idle) / streams it is not
 * thrown off by heap growth that does not depend on the stream count.
 */
export function marginalRssPerStream(rows: SummaryRow[]): Array<{ subject: string; kibPerStream: number; streams: number[] }> {
  const subjects = [...new Set(rows.map((row) => row.subject))];
  return subjects.map((subject) => {
    const points = rows.filter((row) => row.subject === subject && row.runs > 0 && row.keptUp);
    return {
      subject,
      kibPerStream: round(linearSlope(points.map((row) => ({ x: row.streams, y: row.steadyRssKiB }))), 1),
      streams: points.map((row) => row.streams),
    };
  });
}

function problemsOf(entry: Measurement): string[] {
  const problems: string[] = [];
  if (entry.error !== undefined) {
    problems.push(`run ${entry.run}: ${entry.error}`);
  } else if (entry.shutdown.exitCode !== 0 || entry.shutdown.timedOut) {
    problems.push(`run ${entry.run}: exit code ${entry.shutdown.exitCode}${entry.shutdown.timedOut ? ' after a shutdown timeout' : ''}`);
  }
  if (entry.cpu.generatorPercent + entry.cpu.sinkPercent >= LOAD_NEAR_LIMIT_PERCENT) {
    problems.push(`run ${entry.run}: generator and sink used ${round(entry.cpu.generatorPercent + entry.cpu.sinkPercent, 0)} % of their CPU; latency includes their queuing`);
  }
  return problems;
}

function subjectOrder(subject: string): number {
  const index = Object.keys(SUBJECTS).indexOf(subject);
  return index === -1 ? Number.MAX_SAFE_INTEGER : index;
}

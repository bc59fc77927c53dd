/**
 * The benchmark report: every measurement as measured, the medians per
 * subject and stream count, and the ratios of each agent subject to its
 * baseline relay. Ratios are taken within one run (same stream count, same
 * minutes of machine load) and their median is reported, because the
 * machines this runs on are shared and their speed drifts.
 */
import type { Measurement } from './measurement.ts';
import type { MachineInfo } from './proc-stats.ts';
import { median, round } from './statistics.ts';
import { SUBJECTS } from './subjects.ts';

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
  /** Measurements taken in all, counting the ones repeated because the subject waited for a CPU. */
  attempts: number;
  cpuPercent: number;
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
    const ratio = (pick: (entry: Measurement) => number): number | undefined => {
      if (baselineName === undefined) {
        return undefined;
      }
      const ratios = ok.flatMap((entry) => {
        const baseline = baselineOf(entry);
        return baseline === undefined ? [] : [pick(entry) / pick(baseline)];
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
      attempts: all.reduce((sum, entry) => sum + entry.attempts, 0),
      cpuPercent: medianOf((entry) => entry.cpu.subjectPercent),
      idleCpuPercent: medianOf((entry) => entry.cpu.idlePercent),
      microsPerStreamSecond: medianOf((entry) => entry.cpu.subjectMicrosPerStreamSecond),
      cpuRatio: ratio((entry) => entry.cpu.subjectPercent),
      idleRssKiB: medianOf((entry) => entry.memory.idleRssKiB, 0),
      steadyRssKiB: medianOf((entry) => entry.memory.steadyRssKiB, 0),
      perStreamKiB: medianOf((entry) => entry.memory.perStreamKiB),
      perStreamRssRatio: ratio((entry) => entry.memory.perStreamKiB),
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
      problems: all.flatMap((entry) => {
        if (entry.error !== undefined) {
          return [`run ${entry.run}: ${entry.error}`];
        }
        if (entry.shutdown.exitCode !== 0 || entry.shutdown.timedOut) {
          return [`run ${entry.run}: exit code ${entry.shutdown.exitCode}${entry.shutdown.timedOut ? ' after a shutdown timeout' : ''}`];
        }
        return [];
      }),
    });
  }
  return rows.sort((a, b) => a.streams - b.streams || subjectOrder(a.subject) - subjectOrder(b.subject));
}

function subjectOrder(subject: string): number {
  const index = Object.keys(SUBJECTS).indexOf(subject);
  return index === -1 ? Number.MAX_SAFE_INTEGER : index;
}

/** Renders the report as Markdown tables, one per figure. */
export function renderMarkdown(report: BenchReport): string {
  const { machine, settings, summary } = report;
  const formatNumber = (value: number | undefined, suffix = ''): string =>
    value === undefined || !Number.isFinite(value) ? 'n/a' : `${value}${suffix}`;
  const mib = (kib: number): string => formatNumber(round(kib / 1024, 1));
  const lines: string[] = [];
  lines.push(`# Benchmark report, ${report.startedAt}`);
  lines.push('');
  lines.push(
    `Machine: ${machine.cpuModel}, ${machine.cpus} CPUs, ${machine.memoryGiB} GiB, Node ${machine.nodeVersion}, Linux ${machine.kernel}, load average ${machine.loadAverage1m} at the start.`,
  );
  lines.push(
    `Settings: ${settings.runs} run(s) per point, ${settings.windowSeconds} s window, ramp ${settings.rampPerSecond} streams/s, settle ${settings.settleSeconds} s, ${settings.phases} ticks per 20 ms slot, late margin ${settings.lateMarginMs} ms, repeated up to ${settings.attempts} times while the subject waited for a CPU over ${settings.maxWaitPercent} % of the window, pinning ${settings.pinning === undefined ? 'off' : `subject on CPU ${settings.pinning.subject}, generator and sink on CPU ${settings.pinning.load}`}.`,
  );
  lines.push(`Command: \`${settings.command}\``);
  lines.push('');
  lines.push('Subjects:');
  for (const name of settings.subjects) {
    lines.push(`- \`${name}\`: ${SUBJECTS[name]?.description ?? 'unknown'}${SUBJECTS[name]?.baseline === undefined ? '' : `; baseline \`${SUBJECTS[name]?.baseline}\``}`);
  }
  lines.push('');
  lines.push('## CPU (median of runs)');
  lines.push('');
  lines.push('| subject | streams | runs | CPU, % of one core | idle CPU, % | CPU µs per stream-second | × baseline |');
  lines.push('|---|---:|---:|---:|---:|---:|---:|');
  for (const row of summary) {
    lines.push(
      `| ${row.subject} | ${row.streams} | ${row.runs} | ${formatNumber(row.cpuPercent)} | ${formatNumber(row.idleCpuPercent)} | ${formatNumber(row.microsPerStreamSecond)} | ${formatNumber(row.cpuRatio)} |`,
    );
  }
  lines.push('');
  lines.push('## Memory (median of runs)');
  lines.push('');
  lines.push('| subject | streams | idle RSS, MiB | steady RSS, MiB | KiB per stream | × baseline | drift, KiB/min |');
  lines.push('|---|---:|---:|---:|---:|---:|---:|');
  for (const row of summary) {
    lines.push(
      `| ${row.subject} | ${row.streams} | ${mib(row.idleRssKiB)} | ${mib(row.steadyRssKiB)} | ${formatNumber(row.perStreamKiB)} | ${formatNumber(row.perStreamRssRatio)} | ${formatNumber(row.driftKiBPerMinute)} |`,
    );
  }
  lines.push('');
  lines.push('## Latency, packet sent to frame received (median of runs; max over runs)');
  lines.push('');
  lines.push('| subject | streams | frames / expected | p50, ms | p99, ms | max, ms | p99 − baseline p99, ms | late frames | catch-up after start, ms |');
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const row of summary) {
    lines.push(
      `| ${row.subject} | ${row.streams} | ${row.frames} / ${row.expectedFrames} | ${formatNumber(row.p50Ms)} | ${formatNumber(row.p99Ms)} | ${formatNumber(row.maxMs)} | ${formatNumber(row.p99OverBaselineMs)} | ${row.late} | ${formatNumber(row.catchUpMs)} |`,
    );
  }
  lines.push('');
  lines.push('## Load health (generator and sink must not be the bottleneck)');
  lines.push('');
  lines.push(
    '| subject | streams | attempts | subject waited for CPU, % | generator CPU % | generator waited, % | tick lag p99 / max, ms | sink CPU % | UDP drops | shutdown, ms | problems |',
  );
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
  for (const row of summary) {
    lines.push(
      `| ${row.subject} | ${row.streams} | ${row.attempts} | ${formatNumber(row.subjectWaitPercent)} | ${formatNumber(row.generatorPercent)} | ${formatNumber(row.generatorWaitPercent)} | ${formatNumber(row.tickLagP99Ms)} / ${formatNumber(row.tickLagMaxMs)} | ${formatNumber(row.sinkPercent)} | ${row.udpDrops} | ${formatNumber(row.shutdownMs)} | ${row.problems.join('; ') || 'none'} |`,
    );
  }
  lines.push('');
  return lines.join('\n');
}

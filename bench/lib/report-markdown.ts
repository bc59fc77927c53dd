/**
 * The benchmark report as Markdown: the machine and settings, then one
 * table per figure (CPU, memory, latency, load health).
 */
import { marginalRssPerStream, type BenchReport, type SummaryRow } from './bench-report.ts';
import { round } from './statistics.ts';
import { SUBJECTS } from './subjects.ts';

/** Windows shorter than this give no drift figure: a 30 s slope mostly shows when the GC last ran, in s. */
const MIN_DRIFT_WINDOW_SECONDS = 300;

export function renderMarkdown(report: BenchReport): string {
  return [
    ...renderHeader(report),
    ...renderCpu(report.summary),
    ...renderMemory(report),
    ...renderLatency(report.summary),
    ...renderLoadHealth(report.summary),
  ].join('\n');
}

function renderHeader(report: BenchReport): string[] {
  const { machine, settings } = report;
  const pinning =
    settings.pinning === undefined
      ? 'off'
      : `subject on CPU ${settings.pinning.subject}, generator and sink on CPU ${settings.pinning.load}`;
  const lines = [
    `# Benchmark report, ${report.startedAt}`,
    '',
    `Machine: ${machine.cpuModel}, ${machine.cpus} CPUs, ${machine.memoryGiB} GiB, Node ${machine.nodeVersion}, Linux ${machine.kernel}, load average ${machine.loadAverage1m} at the start.`,
    `Settings: ${settings.runs} run(s) per point, ${settings.windowSeconds} s window, ramp ${settings.rampPerSecond} streams/s, ` +
      `settle ${settings.settleSeconds} s, ${settings.phases} ticks per 20 ms slot, late margin ${settings.lateMarginMs} ms, ` +
      `repeated up to ${settings.attempts} times while the subject waited for a CPU over ${settings.maxWaitPercent} % of the window, pinning ${pinning}.`,
    `Source: commit ${report.source.commit}${report.source.changedSourceFiles.length === 0 ? '' : `, with ${report.source.changedSourceFiles.length} changed files under src/ (${report.source.changedSourceFiles.join(', ')})`}.`,
    `Command: \`${settings.command}\``,
    '',
    'Subjects:',
  ];
  for (const name of settings.subjects) {
    const spec = SUBJECTS[name];
    lines.push(`- \`${name}\`: ${spec?.description ?? 'unknown'}${spec?.baseline === undefined ? '' : `; baseline \`${spec.baseline}\``}`);
  }
  lines.push('');
  return lines;
}

function renderCpu(summary: SummaryRow[]): string[] {
  const lines = [
    '## CPU (median of runs)',
    '',
    'A saturated subject wanted its whole CPU and fell behind; its CPU per stream is then a floor, and its ratio a lower bound.',
    '',
    '| subject | streams | runs | CPU, % of one core | of which kernel, % | idle CPU, % | CPU µs per stream-second | × baseline |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const row of summary) {
    const ratio = row.cpuRatio === undefined ? 'n/a' : row.saturated ? `≥ ${row.cpuRatio} (saturated)` : String(row.cpuRatio);
    const perStream = row.saturated ? `≥ ${formatNumber(row.microsPerStreamSecond)}` : formatNumber(row.microsPerStreamSecond);
    lines.push(
      `| ${row.subject} | ${row.streams} | ${row.runs} | ${formatNumber(row.cpuPercent)} | ${formatNumber(row.systemCpuPercent)} | ${formatNumber(row.idleCpuPercent)} | ${perStream} | ${ratio} |`,
    );
  }
  lines.push('');
  return lines;
}

function renderMemory(report: BenchReport): string[] {
  const showDrift = report.settings.windowSeconds >= MIN_DRIFT_WINDOW_SECONDS;
  const lines = [
    '## Memory (median of runs)',
    '',
    'KiB per stream is (steady RSS - idle RSS) / streams. It includes audio queued by a subject that fell behind.',
    '',
    `| subject | streams | idle RSS, MiB | steady RSS, MiB | KiB per stream | × baseline |${showDrift ? ' drift, KiB/min |' : ''}`,
    `|---|---:|---:|---:|---:|---:|${showDrift ? '---:|' : ''}`,
  ];
  for (const row of report.summary) {
    const drift = showDrift ? ` ${formatNumber(row.driftKiBPerMinute)} |` : '';
    lines.push(
      `| ${row.subject} | ${row.streams} | ${formatMiB(row.idleRssKiB)} | ${formatMiB(row.steadyRssKiB)} | ${formatNumber(row.perStreamKiB)} | ${formatNumber(row.perStreamRssRatio)} |${drift}`,
    );
  }
  lines.push('');
  lines.push('Marginal RSS per stream: slope of steady RSS over the stream counts at which the subject kept up.');
  lines.push('');
  lines.push('| subject | KiB per stream | stream counts used |');
  lines.push('|---|---:|---|');
  for (const entry of marginalRssPerStream(report.summary)) {
    lines.push(`| ${entry.subject} | ${formatNumber(entry.kibPerStream)} | ${entry.streams.length < 2 ? 'fewer than two; n/a' : entry.streams.join(', ')} |`);
  }
  if (showDrift) {
    lines.push('');
    lines.push('Drift is the least-squares slope of RSS over the second half of the window.');
  }
  lines.push('');
  return lines;
}

function renderLatency(summary: SummaryRow[]): string[] {
  const lines = [
    '## Latency, packet sent to frame received (median of runs; max over runs)',
    '',
    '| subject | streams | frames / expected | p50, ms | p99, ms | max, ms | p99 − baseline p99, ms | late frames, sum over runs | catch-up after start, ms |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const row of summary) {
    lines.push(
      `| ${row.subject} | ${row.streams} | ${row.frames} / ${row.expectedFrames} | ${formatNumber(row.p50Ms)} | ${formatNumber(row.p99Ms)} | ${formatNumber(row.maxMs)} | ${formatNumber(row.p99OverBaselineMs)} | ${row.late} | ${formatNumber(row.catchUpMs)} |`,
    );
  }
  lines.push('');
  return lines;
}

function renderLoadHealth(summary: SummaryRow[]): string[] {
  const lines = [
    '## Load health (generator and sink must not be the bottleneck)',
    '',
    '| subject | streams | attempts | subject waited for CPU, % | generator CPU % | generator waited, % | tick lag p99 / max, ms | sink CPU % | UDP drops | shutdown, ms | problems |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const row of summary) {
    lines.push(
      `| ${row.subject} | ${row.streams} | ${row.attempts} | ${formatNumber(row.subjectWaitPercent)} | ${formatNumber(row.generatorPercent)} | ` +
        `${formatNumber(row.generatorWaitPercent)} | ${formatNumber(row.tickLagP99Ms)} / ${formatNumber(row.tickLagMaxMs)} | ` +
        `${formatNumber(row.sinkPercent)} | ${row.udpDrops} | ${formatNumber(row.shutdownMs)} | ${row.problems.join('; ') || 'none'} |`,
    );
  }
  lines.push('');
  return lines;
}

function formatNumber(value: number | undefined | null): string {
  return value === undefined || value === null || !Number.isFinite(value) ? 'n/a' : String(value);
}

function formatMiB(kib: number): string {
  return formatNumber(round(kib / 1024, 1));
}

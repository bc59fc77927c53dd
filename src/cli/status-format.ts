/**
 * Text of `modulate-agent status`: a header line for the agent, then one
 * line per alias with its state, a level meter, seconds sent, buffered and
 * dropped, and reconnects.
 */
import type { AgentSnapshot, AliasSnapshot } from '../service/agent-snapshot.ts';
import { formatTable } from './jobs-command.ts';

/** Lower end of the level meter, in dBFS: quieter frames show an empty bar. */
const METER_FLOOR_DBFS = -60;
const METER_WIDTH = 12;

/** Draws the RMS level as a bar from -60 to 0 dBFS, followed by the value. */
export function formatLevelMeter(rmsDbfs: number): string {
  const fraction = Math.min(1, Math.max(0, (rmsDbfs - METER_FLOOR_DBFS) / -METER_FLOOR_DBFS));
  const filled = Math.round(fraction * METER_WIDTH);
  const value = rmsDbfs <= -120 ? 'silent' : `${rmsDbfs.toFixed(0)} dBFS`;
  return `[${'#'.repeat(filled)}${'-'.repeat(METER_WIDTH - filled)}] ${value}`;
}

function formatSeconds(seconds: number): string {
  return `${seconds.toFixed(1)} s`;
}

function formatUptime(totalSeconds: number): string {
  const hours = Math.floor(totalSeconds / 3600);
  const minutes = Math.floor((totalSeconds % 3600) / 60);
  const seconds = totalSeconds % 60;
  return hours > 0 ? `${hours}h${String(minutes).padStart(2, '0')}m` : `${minutes}m${String(seconds).padStart(2, '0')}s`;
}

function describeState(alias: AliasSnapshot): string {
  if (alias.state === 'closed') {
    return `closed (${alias.outcome})`;
  }
  if (alias.state === 'connecting' && alias.retrying) {
    return 'connecting (retry)';
  }
  return alias.state;
}

/** Formats the whole status screen. */
export function formatStatus(snapshot: AgentSnapshot, url: string): string {
  const header =
    `modulate-agent ${snapshot.version}  pid ${snapshot.pid}  ${snapshot.phase}  ${snapshot.ready ? 'ready' : 'NOT READY'}` +
    `  up ${formatUptime(snapshot.uptimeSeconds)}  ${url}`;
  const rows: string[][] = [['JOB', 'JOB ID', 'ALIAS', 'STATE', 'LEVEL', 'SENT', 'BUFFERED', 'DROPPED', 'RECONNECTS']];
  for (const job of snapshot.jobs) {
    if (job.aliases.length === 0) {
      rows.push([job.name, job.jobId ?? '-', '-', job.status, '', '', '', '', '']);
    }
    for (const alias of job.aliases) {
      rows.push([
        job.name,
        job.jobId ?? '-',
        alias.alias,
        describeState(alias),
        formatLevelMeter(alias.levelRmsDbfs),
        formatSeconds(alias.sentSeconds),
        formatSeconds(alias.bufferedSeconds),
        formatSeconds(alias.droppedSeconds),
        String(alias.reconnects),
      ]);
    }
  }
  const rtpLines = snapshot.jobs.flatMap((job) =>
    job.rtpSources.map((source) => {
      const counters = source.counters.source;
      const dropped =
        counters.malformed + counters.notAllowed + counters.unknownPayloadType + counters.overMaxStreams + counters.refused;
      return `rtp ${job.name} ${source.stream} on ${source.listen}: ${counters.datagrams} datagrams, ${dropped} dropped, ${source.counters.streams.length} streams open`;
    }),
  );
  return [header, '', formatTable(rows).trimEnd(), ...(rtpLines.length > 0 ? ['', ...rtpLines] : [])].join('\n') + '\n';
}

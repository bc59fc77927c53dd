/**
 * Point-in-time view of a running agent, read by the metrics collector, the
 * readiness check and `/status.json` (which the `status` command prints).
 * Counters are totals since each alias's stream started; durations are in
 * seconds of audio.
 */
import type { Job } from '../jobs/protocol.ts';
import type { AliasSummary } from '../jobs/alias-stream.ts';
import type { RtpReceiverCounters } from '../sources/rtp/rtp-receiver.ts';
import type { ConnectionStatus } from '../transport/stream-connection.ts';

export type AgentPhase = 'starting' | 'running' | 'reloading' | 'stopping' | 'stopped';

export type JobStatus = Job['status'] | 'not created';

export interface AliasSnapshot {
  alias: string;
  state: ConnectionStatus;
  /** True while the stream waits to reconnect or reconnects after a failure. */
  retrying: boolean;
  /** True when the stream is open, deliberately retrying, or finished normally. */
  ready: boolean;
  outcome: AliasSummary['outcome'];
  sentBytes: number;
  sentSeconds: number;
  sentFrames: number;
  resentBytes: number;
  droppedBytes: number;
  droppedFrames: number;
  droppedSeconds: number;
  /** Audio the server never received and that had left the resend window. */
  lostBytes: number;
  /** Audio waiting in the outage buffer. */
  bufferedBytes: number;
  bufferedSeconds: number;
  reconnects: number;
  results: number;
  /** Level of the last frame sent, in dBFS. */
  levelRmsDbfs: number;
  levelPeakDbfs: number;
}

export interface RtpSourceSnapshot {
  listen: string;
  /** The fixed alias, or the `alias_template` of a demuxing source. */
  stream: string;
  counters: RtpReceiverCounters;
}

export interface JobSnapshot {
  name: string;
  jobId: string | undefined;
  status: JobStatus;
  aliases: AliasSnapshot[];
  rtpSources: RtpSourceSnapshot[];
}

export interface AgentSnapshot {
  version: string;
  pid: number;
  phase: AgentPhase;
  /** True when the agent runs and every stream is ready. */
  ready: boolean;
  /** Start of the process, as an ISO 8601 time. */
  startedAt: string;
  uptimeSeconds: number;
  configFile: string | undefined;
  jobs: JobSnapshot[];
}

/**
 * Readiness of one stream: open (or sending end-of-stream), retrying on
 * purpose after a failure, or finished with `done`. A first connection
 * attempt, or a stream stopped by an error, is not ready.
 */
export function isAliasReady(state: ConnectionStatus, retrying: boolean, outcome: AliasSummary['outcome']): boolean {
  switch (state) {
    case 'open':
    case 'ending':
    case 'reconnecting':
      return true;
    case 'connecting':
      return retrying;
    case 'idle':
      return false;
    case 'closed':
      return outcome === 'done';
  }
}

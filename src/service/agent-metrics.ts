/**
 * Prometheus metrics of the agent. Nothing is updated per frame or per
 * packet: each scrape takes one AgentSnapshot, and every metric's collect()
 * callback copies its values from that snapshot. Counters are set to the
 * running totals (reset, then incremented by the total), so an alias whose
 * stream was replaced by a reload starts again from 0, which Prometheus
 * treats as a counter reset.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

import type { AgentSnapshot, AliasSnapshot, JobSnapshot } from './agent-snapshot.ts';
import type { RtpSourceCounters } from '../sources/rtp/rtp-receiver.ts';
import type { RtpStreamCounters } from '../sources/rtp/rtp-audio-source.ts';
import type { ConnectionStatus } from '../transport/stream-connection.ts';

const PREFIX = 'modulate_agent_';

const CONNECTION_STATES: readonly ConnectionStatus[] = ['idle', 'connecting', 'open', 'reconnecting', 'ending', 'closed'];
const JOB_STATUSES = ['not created', 'active', 'finalizing', 'finalized'] as const;

/** RTP source drop counters, exported as one metric with a `reason` label. */
const RTP_SOURCE_DROP_REASONS = [
  'malformed',
  'notAllowed',
  'unknownPayloadType',
  'overMaxStreams',
  'unconfirmedSsrc',
  'refused',
] as const satisfies ReadonlyArray<keyof RtpSourceCounters>;

/** Per-SSRC packet counters, exported as one metric with an `outcome` label. */
const RTP_PACKET_OUTCOMES = [
  'received',
  'lost',
  'late',
  'duplicate',
  'reordered',
  'outOfSequence',
  'undecodable',
  'overflow',
  'nonAudio',
] as const satisfies ReadonlyArray<keyof RtpStreamCounters>;

type AliasLabels = 'job' | 'alias';

/** Converts a counter name such as `notAllowed` to the snake_case used in label values. */
function snakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
}

export class AgentMetrics {
  readonly registry = new Registry();
  private latest: AgentSnapshot | undefined;
  private readonly takeSnapshot: () => AgentSnapshot;

  constructor(takeSnapshot: () => AgentSnapshot) {
    this.takeSnapshot = takeSnapshot;
    collectDefaultMetrics({ register: this.registry });
    this.defineAgentMetrics();
    this.defineAliasMetrics();
    this.defineRtpMetrics();
  }

  /** Renders the Prometheus text format from one fresh snapshot. */
  async render(): Promise<string> {
    this.latest = this.takeSnapshot();
    try {
      return await this.registry.metrics();
    } finally {
      this.latest = undefined;
    }
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private jobs(): JobSnapshot[] {
    return this.latest?.jobs ?? [];
  }

  private defineAgentMetrics(): void {
    const metrics = this;
    new Gauge({
      name: `${PREFIX}info`,
      help: 'Always 1; the labels carry the agent version.',
      labelNames: ['version'],
      registers: [this.registry],
      collect() {
        this.reset();
        if (metrics.latest !== undefined) {
          this.set({ version: metrics.latest.version }, 1);
        }
      },
    });
    new Gauge({
      name: `${PREFIX}ready`,
      help: '1 when every stream is open, deliberately retrying or finished; 0 otherwise (as /readyz).',
      registers: [this.registry],
      collect() {
        this.set(metrics.latest?.ready === true ? 1 : 0);
      },
    });
    new Gauge({
      name: `${PREFIX}job_status`,
      help: 'Status of each configured job: 1 for the current status, 0 for the others.',
      labelNames: ['job', 'job_id', 'status'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const job of metrics.jobs()) {
          for (const status of JOB_STATUSES) {
            this.set({ job: job.name, job_id: job.jobId ?? '', status: status.replace(' ', '_') }, job.status === status ? 1 : 0);
          }
        }
      },
    });
  }

  private defineAliasMetrics(): void {
    const counter = (name: string, help: string, value: (alias: AliasSnapshot) => number): void => {
      const metrics = this;
      new Counter<AliasLabels>({
        name: `${PREFIX}${name}`,
        help,
        labelNames: ['job', 'alias'],
        registers: [this.registry],
        collect() {
          this.reset();
          for (const job of metrics.jobs()) {
            for (const alias of job.aliases) {
              this.inc({ job: job.name, alias: alias.alias }, value(alias));
            }
          }
        },
      });
    };
    const gauge = (name: string, help: string, value: (alias: AliasSnapshot) => number): void => {
      const metrics = this;
      new Gauge<AliasLabels>({
        name: `${PREFIX}${name}`,
        help,
        labelNames: ['job', 'alias'],
        registers: [this.registry],
        collect() {
          this.reset();
          for (const job of metrics.jobs()) {
            for (const alias of job.aliases) {
              this.set({ job: job.name, alias: alias.alias }, value(alias));
            }
          }
        },
      });
    };

    counter('stream_sent_bytes_total', 'Audio bytes sent on the stream, not counting resent audio.', (alias) => alias.sentBytes);
    counter('stream_sent_seconds_total', 'Seconds of audio sent on the stream.', (alias) => alias.sentSeconds);
    counter('stream_sent_frames_total', 'WebSocket binary frames of audio sent.', (alias) => alias.sentFrames);
    counter('stream_resent_bytes_total', 'Audio bytes sent again after a reconnect because the server had not received them.', (alias) => alias.resentBytes);
    counter('stream_dropped_frames_total', 'Frames dropped: outage buffer full, or queued when the stream closed.', (alias) => alias.droppedFrames);
    counter('stream_dropped_seconds_total', 'Seconds of audio in dropped frames.', (alias) => alias.droppedSeconds);
    counter('stream_dropped_bytes_total', 'Bytes of audio in dropped frames.', (alias) => alias.droppedBytes);
    counter('stream_lost_bytes_total', 'Bytes the server never received that had left the resend window.', (alias) => alias.lostBytes);
    counter('stream_reconnects_total', 'Connections opened after the first one.', (alias) => alias.reconnects);
    counter('stream_results_total', 'Result messages received on the stream.', (alias) => alias.results);
    gauge('stream_buffered_bytes', 'Audio bytes waiting in the outage buffer.', (alias) => alias.bufferedBytes);
    gauge('stream_buffered_seconds', 'Seconds of audio waiting in the outage buffer.', (alias) => alias.bufferedSeconds);
    gauge('stream_level_rms_dbfs', 'RMS level of the last frame sent, in dBFS (-120 for silence).', (alias) => alias.levelRmsDbfs);
    gauge('stream_level_peak_dbfs', 'Peak level of the last frame sent, in dBFS (-120 for silence).', (alias) => alias.levelPeakDbfs);

    const metrics = this;
    new Gauge<AliasLabels | 'state'>({
      name: `${PREFIX}stream_state`,
      help: 'Connection state of the stream: 1 for the current state, 0 for the others.',
      labelNames: ['job', 'alias', 'state'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const job of metrics.jobs()) {
          for (const alias of job.aliases) {
            for (const state of CONNECTION_STATES) {
              this.set({ job: job.name, alias: alias.alias, state }, alias.state === state ? 1 : 0);
            }
          }
        }
      },
    });
  }

  private defineRtpMetrics(): void {
    const metrics = this;
    new Counter({
      name: `${PREFIX}rtp_datagrams_total`,
      help: 'UDP datagrams received on the RTP port.',
      labelNames: ['job', 'listen'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const job of metrics.jobs()) {
          for (const source of job.rtpSources) {
            this.inc({ job: job.name, listen: source.listen }, source.counters.source.datagrams);
          }
        }
      },
    });
    new Counter({
      name: `${PREFIX}rtp_dropped_datagrams_total`,
      help: 'Datagrams dropped before reaching a stream, by reason.',
      labelNames: ['job', 'listen', 'reason'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const job of metrics.jobs()) {
          for (const source of job.rtpSources) {
            for (const reason of RTP_SOURCE_DROP_REASONS) {
              this.inc({ job: job.name, listen: source.listen, reason: snakeCase(reason) }, source.counters.source[reason]);
            }
          }
        }
      },
    });
    new Counter({
      name: `${PREFIX}rtp_packets_total`,
      help: 'RTP packets of each SSRC stream open now, by outcome (received, lost, late, duplicate, ...).',
      labelNames: ['job', 'alias', 'ssrc', 'outcome'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const job of metrics.jobs()) {
          for (const source of job.rtpSources) {
            for (const stream of source.counters.streams) {
              const labels = { job: job.name, alias: stream.alias, ssrc: String(stream.ssrc) };
              for (const outcome of RTP_PACKET_OUTCOMES) {
                this.inc({ ...labels, outcome: snakeCase(outcome) }, stream[outcome]);
              }
            }
          }
        }
      },
    });
    new Gauge({
      name: `${PREFIX}rtp_streams`,
      help: 'SSRC streams open now on the RTP source.',
      labelNames: ['job', 'listen'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const job of metrics.jobs()) {
          for (const source of job.rtpSources) {
            this.set({ job: job.name, listen: source.listen }, source.counters.streams.length);
          }
        }
      },
    });
  }
}

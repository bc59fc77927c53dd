/**
 * An RTP source: one UDP port whose packets become one alias (static mode,
 * `alias`) or one alias per SSRC (demux mode, `alias_template`).
 *
 * Per datagram: sender allowlist, header parse, RTCP skipped, payload type
 * looked up, then routed by SSRC. An SSRC without a stream must first send
 * two packets in sequence (see SsrcProbation). A confirmed SSRC then opens a
 * stream in demux mode (at most `max_streams` at once) or takes over the
 * static alias. Demuxed streams with no packet for `idle_end_ms` are ended
 * with end-of-stream. Nothing a sender does is thrown: every drop is
 * counted, and the counts are logged once per stats interval when they
 * grow.
 *
 * Streams are started and ended through an RtpStreamHost, which the agent
 * implements with its job session, so this module does not depend on jobs/.
 */
import type { Socket, RemoteInfo } from 'node:dgram';
import type { BlockList } from 'node:net';

import { systemClock, type Clock } from '../../clock.ts';
import type { RtpSourceConfig } from '../../config/types.ts';
import { ALIAS_PATTERN } from '../../jobs/protocol.ts';
import type { Logger } from '../../logger.ts';
import { isAudioEncoding, PayloadTypeTable, type PayloadFormat } from './payload-types.ts';
import { RtpAudioSource, type RtpStreamCounters } from './rtp-audio-source.ts';
import { parseRtpDatagram, RTP_HEADER_BYTES, RTP_VERSION, type RtpPacket } from './rtp-packet.ts';
import { bindRtpSocket, buildAllowList, isSenderAllowed, resolveListenAddress } from './rtp-socket.ts';
import { SsrcProbation } from './ssrc-probation.ts';
import { unmappedPayloadTypeMessage } from './unmapped-payload-type.ts';

/** Request from the receiver to its host to start one alias. */
export interface RtpStreamRequest {
  alias: string;
  ssrc: number;
  source: RtpAudioSource;
  sampleRateHz: number;
  channels: number;
}

/** Starts and ends the streams of an RTP source; the agent implements it with a JobSession. */
export interface RtpStreamHost {
  openStream(request: RtpStreamRequest): Promise<void>;
  /** Ends `alias` with end-of-stream once its source has ended. */
  endStream(alias: string): Promise<void>;
}

/** Datagram counts of one RTP source since it started. */
export interface RtpSourceCounters {
  datagrams: number;
  /** RTP packets with a known payload type, routed by SSRC; every datagram is this or one of the drops. */
  packets: number;
  /** RTCP packets on the RTP port, recognised and ignored. */
  rtcp: number;
  /** Datagrams that are not valid RTP. */
  malformed: number;
  /** Datagrams from senders outside `allow_from`. */
  notAllowed: number;
  /** Packets whose payload type is neither static nor in `payload_types`. */
  unknownPayloadType: number;
  /** Packets of new SSRCs dropped while `max_streams` streams are open. */
  overMaxStreams: number;
  /** Packets of SSRCs that were never confirmed by a second packet in sequence. */
  unconfirmedSsrc: number;
  /** Packets of SSRCs whose stream could not be opened, dropped until `idle_end_ms` has passed. */
  refused: number;
  streamsOpened: number;
  streamsEnded: number;
}

export interface RtpReceiverCounters {
  source: RtpSourceCounters;
  /** Streams open now. */
  streams: Array<RtpStreamCounters & { alias: string }>;
}

export interface RtpReceiverOptions {
  config: RtpSourceConfig;
  /** Static mode: every packet goes to this alias. */
  alias?: string;
  /** Demux mode: one alias per SSRC, `{ssrc}` replaced by the SSRC in decimal. */
  aliasTemplate?: string;
  host: RtpStreamHost;
  logger: Logger;
  clock?: Clock;
  /** Interval of the log line that reports drops, in ms. */
  statsIntervalMs?: number;
  /** Config key of the source, for error messages, such as `jobs[0].streams[1].source`. */
  keyPath?: string;
}

interface OpenStream {
  alias: string;
  source: RtpAudioSource;
}

const DEFAULT_STATS_INTERVAL_MS = 10000;

/** Unmapped payload types reported one by one; later ones are only counted in the drop line. */
const MAX_REPORTED_PAYLOAD_TYPES = 10;

/** SSRCs remembered for reopening under a numbered alias, or as rejected; the oldest is forgotten beyond it. */
const MAX_REMEMBERED_SSRCS = 10000;

/** Drop counters summed into the periodic log line. */
type DropTotals = Record<
  | 'notAllowed'
  | 'malformed'
  | 'unknownPayloadType'
  | 'overMaxStreams'
  | 'unconfirmedSsrc'
  | 'refused'
  | 'lost'
  | 'late'
  | 'duplicate'
  | 'undecodable'
  | 'overflow',
  number
>;

export class RtpReceiver {
  readonly listen: string;
  private readonly options: RtpReceiverOptions;
  private readonly config: RtpSourceConfig;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly payloadTypes: PayloadTypeTable;
  private readonly allowList: BlockList | undefined;
  private readonly socket: Socket;
  private readonly probation = new SsrcProbation();
  private readonly streams = new Map<number, OpenStream>();
  private staticStream: OpenStream | undefined;
  /** Demux: how many streams each ended SSRC has had, to name the next one. */
  private readonly generations = new Map<number, number>();
  /** SSRCs whose stream could not be opened, with the time they may be tried again. */
  private readonly rejectedUntilMs = new Map<number, number>();
  private readonly reportedPayloadTypes = new Set<number>();
  private readonly counts: RtpSourceCounters = emptySourceCounters();
  /** Stream drop counts of streams that have ended, so totals survive them. */
  private readonly endedStreamDrops: DropTotals = emptyDropTotals();
  private lastReportedDrops: DropTotals = emptyDropTotals();
  private maxStreamsWarnedAtMs: number | undefined;
  private statsTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;
  private resolveClosed!: () => void;
  /** Resolves once the receiver has closed, by close() or after a socket error. */
  readonly closed: Promise<void>;

  private constructor(options: RtpReceiverOptions, socket: Socket, payloadTypes: PayloadTypeTable, allowList: BlockList | undefined) {
    this.options = options;
    this.config = options.config;
    this.listen = options.config.listen;
    // The host's logger names the listen address, so the receiver's own lines leave it out.
    this.log = options.logger;
    this.clock = options.clock ?? systemClock;
    this.payloadTypes = payloadTypes;
    this.allowList = allowList;
    this.socket = socket;
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
    socket.on('message', (datagram, remote) => this.onDatagram(datagram, remote));
    socket.on('error', (error) => {
      this.log.error({ err: error }, 'rtp socket failed; the source stops');
      void this.close();
    });
    this.scheduleStats();
    if (options.aliasTemplate !== undefined) {
      this.scheduleIdleCheck();
    }
  }

  /**
   * Checks the source's settings, binds its socket and starts receiving.
   *
   * @throws ConfigError for invalid payload types, allowlist entries or a listen host that does not resolve.
   * @throws SourceError when the port cannot be bound.
   */
  static async start(options: RtpReceiverOptions): Promise<RtpReceiver> {
    if ((options.alias === undefined) === (options.aliasTemplate === undefined)) {
      throw new Error('RtpReceiver needs exactly one of alias and aliasTemplate');
    }
    const keyPath = options.keyPath ?? 'source';
    const { config } = options;
    const payloadTypes = new PayloadTypeTable(config.payload_types, `${keyPath}.payload_types`);
    const allowList = config.allow_from === undefined ? undefined : buildAllowList(config.allow_from, `${keyPath}.allow_from`);
    const address = await resolveListenAddress(config.listen, `${keyPath}.listen`);
    const socketLog = options.logger.child(
      options.alias === undefined ? { aliasTemplate: options.aliasTemplate } : { alias: options.alias },
    );
    const socket = await bindRtpSocket(address, config.receive_buffer_bytes, socketLog);
    return new RtpReceiver(options, socket, payloadTypes, allowList);
  }

  /** Address and port the socket is bound to; the port is the actual one when `listen` gives port 0. */
  address(): { address: string; port: number; family: string } {
    return this.socket.address();
  }

  counters(): RtpReceiverCounters {
    const streams = this.openStreams().map(({ alias, source }) => ({ alias, ...source.counters() }));
    return { source: { ...this.counts, unconfirmedSsrc: this.probation.unconfirmed }, streams };
  }

  /** Stops receiving, and ends every source after what it holds; the streams themselves are ended by their host. */
  close(): Promise<void> {
    if (this.closing === undefined) {
      this.closing = this.shutDown();
    }
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    this.clearTimers();
    await new Promise<void>((resolve) => {
      try {
        this.socket.close(() => resolve());
      } catch {
        // Already closed after a socket error.
        resolve();
      }
    });
    await Promise.all(this.openStreams().map(({ source }) => source.stopped()));
    this.reportDrops();
    this.log.info(this.counters().source, 'rtp source closed');
    this.resolveClosed();
  }

  private openStreams(): OpenStream[] {
    return this.staticStream !== undefined ? [this.staticStream] : [...this.streams.values()];
  }

  private onDatagram(datagram: Buffer, remote: RemoteInfo): void {
    if (this.closing !== undefined) {
      return;
    }
    this.counts.datagrams += 1;
    if (!isSenderAllowed(this.allowList, remote.address, remote.family)) {
      this.counts.notAllowed += 1;
      return;
    }
    const parsed = parseRtpDatagram(datagram);
    switch (parsed.kind) {
      case 'rtcp':
        this.counts.rtcp += 1;
        return;
      case 'malformed':
        this.counts.malformed += 1;
        this.attributeMalformed(datagram);
        return;
      case 'rtp':
        break;
    }
    const { packet } = parsed;
    const format = this.payloadTypes.get(packet.payloadType);
    if (format === undefined) {
      this.counts.unknownPayloadType += 1;
      this.reportUnmappedPayloadType(packet);
      return;
    }
    this.counts.packets += 1;
    if (this.options.aliasTemplate === undefined) {
      this.routeStatic(packet);
    } else {
      this.routeDemux(packet, this.options.aliasTemplate);
    }
  }

  private routeStatic(packet: RtpPacket): void {
    const current = this.staticStream;
    if (current !== undefined && current.source.ssrc === packet.ssrc) {
      current.source.push(packet);
      return;
    }
    if (this.isRejected(packet.ssrc)) {
      return;
    }
    const confirmed = this.confirm(packet);
    if (confirmed === undefined) {
      return;
    }
    if (current === undefined) {
      this.staticStream = this.open(this.options.alias!, packet.ssrc, confirmed);
      return;
    }
    current.source.switchSsrc(packet.ssrc);
    for (const held of confirmed) {
      current.source.push(held);
    }
  }

  private routeDemux(packet: RtpPacket, template: string): void {
    const existing = this.streams.get(packet.ssrc);
    if (existing !== undefined) {
      existing.source.push(packet);
      return;
    }
    if (this.isRejected(packet.ssrc)) {
      return;
    }
    if (this.streams.size >= this.config.max_streams) {
      this.counts.overMaxStreams += 1;
      this.warnMaxStreams(packet.ssrc);
      return;
    }
    const confirmed = this.confirm(packet);
    if (confirmed === undefined) {
      return;
    }
    const alias = this.demuxAlias(template, packet.ssrc);
    if (alias === undefined) {
      return;
    }
    this.streams.set(packet.ssrc, this.open(alias, packet.ssrc, confirmed));
  }

  /** Probation of an SSRC without a stream; returns the packets to hand over once it is confirmed with audio. */
  private confirm(packet: RtpPacket): RtpPacket[] | undefined {
    const confirmed = this.probation.offer(packet, this.clock.nowMs());
    if (confirmed === undefined) {
      return undefined;
    }
    if (this.firstAudioFormat(confirmed) === undefined) {
      // Telephone events or comfort noise alone give no audio format to open
      // a stream with; keep waiting for audio.
      this.probation.offer(packet, this.clock.nowMs());
      return undefined;
    }
    return confirmed;
  }

  private open(alias: string, ssrc: number, packets: RtpPacket[]): OpenStream {
    const format = this.firstAudioFormat(packets)!;
    const channels = format.channels;
    const source = new RtpAudioSource({
      ssrc,
      format: { sampleRateHz: format.sampleRateHz, channels },
      payloadTypes: this.payloadTypes,
      jitterMs: this.config.jitter_ms,
      fillGaps: this.config.fill_gaps,
      maxGapFillMs: this.config.max_gap_fill_ms,
      clock: this.clock,
      logger: this.log.child({ alias, ssrc }),
    });
    const stream: OpenStream = { alias, source };
    this.counts.streamsOpened += 1;
    this.log.info(
      { alias, ssrc, payloadType: format.payloadType, rtpmap: format.rtpmap, sampleRateHz: format.sampleRateHz, channels },
      'rtp stream starting',
    );
    for (const packet of packets) {
      source.push(packet);
    }
    this.options.host
      .openStream({ alias, ssrc, source, sampleRateHz: format.sampleRateHz, channels })
      .catch((error: unknown) => this.onOpenFailed(stream, ssrc, error));
    return stream;
  }

  private onOpenFailed(stream: OpenStream, ssrc: number, error: unknown): void {
    this.log.error({ err: error, alias: stream.alias, ssrc }, 'rtp stream could not be started; its packets are dropped');
    stream.source.stop();
    if (this.staticStream === stream) {
      this.staticStream = undefined;
    }
    if (this.streams.get(ssrc) === stream) {
      this.streams.delete(ssrc);
    }
    this.remember(this.rejectedUntilMs, ssrc, this.clock.nowMs() + this.config.idle_end_ms);
  }

  private isRejected(ssrc: number): boolean {
    const untilMs = this.rejectedUntilMs.get(ssrc);
    if (untilMs === undefined) {
      return false;
    }
    if (this.clock.nowMs() >= untilMs) {
      this.rejectedUntilMs.delete(ssrc);
      return false;
    }
    this.counts.refused += 1;
    return true;
  }

  /**
   * Returns the alias of a new demuxed SSRC. The server rejects an ended
   * alias with 409, so an SSRC that comes back after `idle_end_ms` gets the
   * alias with `.2`, `.3`... appended.
   */
  private demuxAlias(template: string, ssrc: number): string | undefined {
    const base = template.replaceAll('{ssrc}', String(ssrc));
    const previous = this.generations.get(ssrc) ?? 0;
    const alias = previous === 0 ? base : `${base}.${previous + 1}`;
    if (!ALIAS_PATTERN.test(alias)) {
      this.counts.refused += 1;
      this.log.warn({ alias, ssrc }, 'rtp ssrc returned but its numbered alias exceeds 64 characters; shorten alias_template');
      this.remember(this.rejectedUntilMs, ssrc, this.clock.nowMs() + this.config.idle_end_ms);
      return undefined;
    }
    return alias;
  }

  private firstAudioFormat(packets: RtpPacket[]): PayloadFormat | undefined {
    for (const packet of packets) {
      const format = this.payloadTypes.get(packet.payloadType);
      if (format !== undefined && isAudioEncoding(format.encoding)) {
        return format;
      }
    }
    return undefined;
  }

  /** Counts a malformed datagram against the stream of its SSRC too, when the header shows one. */
  private attributeMalformed(datagram: Buffer): void {
    if (datagram.length < RTP_HEADER_BYTES || datagram[0]! >> 6 !== RTP_VERSION) {
      return;
    }
    const ssrc = datagram.readUInt32BE(8);
    const stream = this.staticStream?.source.ssrc === ssrc ? this.staticStream : this.streams.get(ssrc);
    stream?.source.countMalformed();
  }

  private reportUnmappedPayloadType(packet: RtpPacket): void {
    if (this.reportedPayloadTypes.has(packet.payloadType) || this.reportedPayloadTypes.size >= MAX_REPORTED_PAYLOAD_TYPES) {
      return;
    }
    this.reportedPayloadTypes.add(packet.payloadType);
    this.log.warn(
      { payloadType: packet.payloadType, ssrc: packet.ssrc },
      unmappedPayloadTypeMessage(packet.payloadType, packet.ssrc),
    );
  }

  private warnMaxStreams(ssrc: number): void {
    const nowMs = this.clock.nowMs();
    const intervalMs = this.options.statsIntervalMs ?? DEFAULT_STATS_INTERVAL_MS;
    if (this.maxStreamsWarnedAtMs !== undefined && nowMs - this.maxStreamsWarnedAtMs < intervalMs) {
      return;
    }
    this.maxStreamsWarnedAtMs = nowMs;
    this.log.warn(
      { maxStreams: this.config.max_streams, ssrc, dropped: this.counts.overMaxStreams },
      'rtp source has max_streams streams open; packets of new SSRCs are dropped (raise max_streams if they are real senders)',
    );
  }

  private scheduleIdleCheck(): void {
    const intervalMs = Math.max(10, Math.min(1000, Math.floor(this.config.idle_end_ms / 4)));
    this.idleTimer = this.clock.setTimeout(() => {
      this.endIdleStreams();
      this.scheduleIdleCheck();
    }, intervalMs);
    this.idleTimer.unref?.();
  }

  private endIdleStreams(): void {
    const nowMs = this.clock.nowMs();
    for (const [ssrc, stream] of this.streams) {
      const idleMs = nowMs - stream.source.lastPacketMs;
      if (idleMs < this.config.idle_end_ms) {
        continue;
      }
      this.streams.delete(ssrc);
      this.remember(this.generations, ssrc, (this.generations.get(ssrc) ?? 0) + 1);
      this.counts.streamsEnded += 1;
      this.addEndedDrops(stream.source.counters());
      this.log.info({ alias: stream.alias, ssrc, idleMs: Math.round(idleMs) }, 'rtp stream idle; ending it');
      stream.source.stop();
      this.options.host.endStream(stream.alias).catch((error: unknown) => {
        this.log.error({ err: error, alias: stream.alias }, 'ending an idle rtp stream failed');
      });
    }
  }

  private scheduleStats(): void {
    this.statsTimer = this.clock.setTimeout(() => {
      this.reportDrops();
      this.scheduleStats();
    }, this.options.statsIntervalMs ?? DEFAULT_STATS_INTERVAL_MS);
    this.statsTimer.unref?.();
  }

  /** Logs the drops since the last report, when there were any. */
  private reportDrops(): void {
    const totals = this.dropTotals();
    const delta = emptyDropTotals();
    let any = false;
    for (const key of Object.keys(delta) as Array<keyof DropTotals>) {
      delta[key] = totals[key] - this.lastReportedDrops[key];
      any ||= delta[key] !== 0;
    }
    this.lastReportedDrops = totals;
    if (any) {
      this.log.warn({ streams: this.openStreams().length, ...delta }, 'rtp packets dropped');
    }
  }

  private dropTotals(): DropTotals {
    const totals: DropTotals = {
      ...this.endedStreamDrops,
      notAllowed: this.counts.notAllowed,
      malformed: this.counts.malformed,
      unknownPayloadType: this.counts.unknownPayloadType,
      overMaxStreams: this.counts.overMaxStreams,
      unconfirmedSsrc: this.probation.unconfirmed,
      refused: this.counts.refused,
    };
    for (const { source } of this.openStreams()) {
      addStreamDrops(totals, source.counters());
    }
    return totals;
  }

  private addEndedDrops(counters: RtpStreamCounters): void {
    addStreamDrops(this.endedStreamDrops, counters);
  }

  private remember(map: Map<number, number>, ssrc: number, value: number): void {
    map.delete(ssrc);
    map.set(ssrc, value);
    if (map.size > MAX_REMEMBERED_SSRCS) {
      const oldest = map.keys().next();
      if (oldest.done !== true) {
        map.delete(oldest.value);
      }
    }
  }

  private clearTimers(): void {
    if (this.statsTimer !== undefined) {
      this.clock.clearTimeout(this.statsTimer);
      this.statsTimer = undefined;
    }
    if (this.idleTimer !== undefined) {
      this.clock.clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
    }
  }
}

/** Returns the counts of an RTP source that has received nothing yet. */
export function emptySourceCounters(): RtpSourceCounters {
  return {
    datagrams: 0,
    packets: 0,
    rtcp: 0,
    malformed: 0,
    notAllowed: 0,
    unknownPayloadType: 0,
    overMaxStreams: 0,
    unconfirmedSsrc: 0,
    refused: 0,
    streamsOpened: 0,
    streamsEnded: 0,
  };
}

function emptyDropTotals(): DropTotals {
  return {
    notAllowed: 0,
    malformed: 0,
    unknownPayloadType: 0,
    overMaxStreams: 0,
    unconfirmedSsrc: 0,
    refused: 0,
    lost: 0,
    late: 0,
    duplicate: 0,
    undecodable: 0,
    overflow: 0,
  };
}

function addStreamDrops(totals: DropTotals, counters: RtpStreamCounters): void {
  totals.lost += counters.lost;
  totals.late += counters.late;
  totals.duplicate += counters.duplicate;
  totals.undecodable += counters.undecodable;
  totals.overflow += counters.overflow;
}

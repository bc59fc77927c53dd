/**
 * The AudioSource of one RTP alias: a jitter buffer per current SSRC feeds
 * an RtpStreamDecoder, whose blocks go out through a LiveReadable.
 * The receiver hands it the packets of its SSRC; in the static mode it also
 * switches the SSRC, which restarts the sequence as a discontinuity.
 */
import type { PcmBlock } from '../../audio/format.ts';
import { LiveReadable } from '../../audio/live-readable.ts';
import type { Clock } from '../../clock.ts';
import type { Logger } from '../../logger.ts';
import type { AudioSource } from '../audio-source.ts';
import type { SampleFormat } from './format-adapter.ts';
import { JitterBuffer, type JitterCounters } from './jitter-buffer.ts';
import type { PayloadTypeTable } from './payload-types.ts';
import type { RtpPacket } from './rtp-packet.ts';
import { RtpStreamDecoder, type DecodeCounters } from './rtp-stream-decoder.ts';

/**
 * Blocks waiting in the Readable at most; a live source cannot wait, so
 * blocks beyond it are dropped and counted. At 20 ms per packet this is
 * 20 s of audio, far more than a consumer that keeps up ever holds.
 */
const MAX_QUEUED_BLOCKS = 1000;

/** Counters of one RTP stream (one alias). */
export interface RtpStreamCounters extends JitterCounters, DecodeCounters {
  /** SSRC the stream carries now. */
  ssrc: number;
  /** Times the static mode switched to another SSRC. */
  ssrcChanges: number;
  /** Datagrams of this SSRC with a malformed header, plus payloads that could not be decoded. */
  malformed: number;
}

export interface RtpAudioSourceOptions {
  ssrc: number;
  format: SampleFormat;
  payloadTypes: PayloadTypeTable;
  jitterMs: number;
  fillGaps: boolean;
  maxGapFillMs: number;
  clock: Clock;
  logger: Logger;
}

export class RtpAudioSource implements AudioSource {
  readonly kind = 'rtp';
  readonly live = true;
  readonly readable: LiveReadable;
  readonly format: SampleFormat;
  /** Clock time of the last packet handed to this source, in ms. */
  lastPacketMs: number;
  private readonly options: RtpAudioSourceOptions;
  private readonly log: Logger;
  private readonly jitter: JitterBuffer;
  private readonly decoder: RtpStreamDecoder;
  private currentSsrc: number;
  private ssrcChanges = 0;
  private queueDrops = 0;
  private malformedHeaders = 0;
  private stopping: Promise<void> | undefined;

  constructor(options: RtpAudioSourceOptions) {
    this.options = options;
    this.format = options.format;
    this.log = options.logger;
    this.currentSsrc = options.ssrc;
    this.lastPacketMs = options.clock.nowMs();
    this.readable = new LiveReadable();
    this.decoder = new RtpStreamDecoder({
      format: options.format,
      payloadTypes: options.payloadTypes,
      fillGaps: options.fillGaps,
      maxGapFillMs: options.maxGapFillMs,
      jitterMs: options.jitterMs,
      logger: options.logger,
      emit: (block) => this.emit(block),
    });
    this.jitter = new JitterBuffer({
      windowMs: options.jitterMs,
      clock: options.clock,
      onRelease: (released) => this.decoder.push(released),
    });
  }

  get ssrc(): number {
    return this.currentSsrc;
  }

  /** Packets held by the jitter buffer now. */
  get heldPackets(): number {
    return this.jitter.heldPackets;
  }

  /** Takes one packet of the current SSRC. */
  push(packet: RtpPacket): void {
    if (this.stopping !== undefined) {
      return;
    }
    const arrivalMs = this.options.clock.nowMs();
    this.lastPacketMs = arrivalMs;
    this.jitter.push(packet, arrivalMs);
  }

  /** Starts carrying another SSRC: what is held is released, and the new sequence starts a new stretch of timeline. */
  switchSsrc(ssrc: number): void {
    if (ssrc === this.currentSsrc || this.stopping !== undefined) {
      return;
    }
    this.log.info({ from: this.currentSsrc, to: ssrc }, 'rtp stream switched to another ssrc');
    this.jitter.reset();
    this.currentSsrc = ssrc;
    this.ssrcChanges += 1;
  }

  /** Counts a datagram of this SSRC whose header could not be parsed. */
  countMalformed(): void {
    this.malformedHeaders += 1;
  }

  counters(): RtpStreamCounters {
    return {
      ssrc: this.currentSsrc,
      ssrcChanges: this.ssrcChanges,
      ...this.jitter.counters,
      ...this.decoder.counters,
      malformed: this.malformedHeaders + this.decoder.counters.undecodable,
      overflow: this.decoder.counters.overflow + this.queueDrops,
      // Every restart of the sequence shows up as a timeline discontinuity, so only those are counted.
      discontinuities: this.decoder.counters.discontinuities,
    };
  }

  /** Releases what the jitter buffer holds, emits it, then ends the Readable. */
  stop(): void {
    void this.stopped();
  }

  /** Like stop(), and resolves once the Readable has been ended. */
  stopped(): Promise<void> {
    if (this.stopping === undefined) {
      this.jitter.flush();
      this.jitter.stop();
      this.stopping = this.decoder.finish().then(() => {
        this.readable.push(null);
      });
    }
    return this.stopping;
  }

  private emit(block: PcmBlock): void {
    if (this.readable.readableLength >= MAX_QUEUED_BLOCKS) {
      this.queueDrops += 1;
      return;
    }
    this.readable.deliver(block);
  }
}

/**
 * Decoding side of one RTP stream. Packets released in order by the jitter
 * buffer are decoded and placed on the stream's timeline, with fills for
 * loss and silence. Packets whose payload type decodes to another format
 * are converted to the stream's format. The result goes out as PcmBlocks.
 *
 * Packets are processed one after another on a promise chain because G.722
 * decodes asynchronously in ffmpeg; synchronous codecs decode on the chain,
 * so Opus concealment runs between the right packets. The chain is bounded
 * by MAX_PENDING_PACKETS.
 */
import type { PcmBlock } from '../../audio/format.ts';
import type { Logger } from '../../logger.ts';
import { FormatAdapter, type SampleFormat } from './format-adapter.ts';
import type { ReleasedPacket } from './jitter-buffer.ts';
import { createPayloadDecoder, ticksOfFrames, type PayloadDecoder } from './payload-decoder.ts';
import { isAudioEncoding, type PayloadFormat, type PayloadTypeTable } from './payload-types.ts';
import { RtpTimeline, type DiscontinuityReason } from './rtp-timeline.ts';

/** Packets waiting to be decoded at most, about 10 s at 20 ms per packet; beyond it packets are dropped. */
const MAX_PENDING_PACKETS = 500;

/** Discontinuities are logged at most once per this interval, with the count, in ms. */
const DISCONTINUITY_LOG_INTERVAL_MS = 10000;

/** Largest block of filled silence, in ms; long gaps are cut into blocks of this length. */
const FILL_BLOCK_MS = 200;

/** Counts kept by the decoding side of a stream. */
export interface DecodeCounters {
  /** Payloads that could not be decoded. */
  undecodable: number;
  /** Telephone-event and comfort noise packets, which carry no audio to send. */
  nonAudio: number;
  /** Packets dropped because decoding fell behind. */
  overflow: number;
  /** Timeline restarts other than the stream's first packet. */
  discontinuities: number;
  /** Frames filled with concealment or silence. */
  filledFrames: number;
}

interface QueuedPacket {
  released: ReleasedPacket;
  format: PayloadFormat | undefined;
  decoder: PayloadDecoder | undefined;
  /** Result of a decoder that was handed the payload when it was released. */
  started: Promise<Float32Array> | undefined;
}

export interface RtpStreamDecoderOptions {
  /** Format of the emitted blocks, fixed when the stream opens. */
  format: SampleFormat;
  payloadTypes: PayloadTypeTable;
  fillGaps: boolean;
  maxGapFillMs: number;
  jitterMs: number;
  logger: Logger;
  emit: (block: PcmBlock) => void;
}

export class RtpStreamDecoder {
  readonly counters: DecodeCounters = { undecodable: 0, nonAudio: 0, overflow: 0, discontinuities: 0, filledFrames: 0 };
  private readonly options: RtpStreamDecoderOptions;
  private readonly log: Logger;
  private readonly timeline: RtpTimeline;
  private readonly decoders = new Map<number, PayloadDecoder>();
  private readonly adapters = new Map<string, FormatAdapter>();
  private readonly failedPayloadTypes = new Set<number>();
  private readonly undecodableReported = new Set<number>();
  private chain: Promise<void> = Promise.resolve();
  private pendingPackets = 0;
  /** Packets that failed to decode since the last good one; they count as lost for the timeline. */
  private undecodedPackets = 0;
  private discontinuityLoggedAtMs: number | undefined;
  private discontinuitiesLogged = 0;

  constructor(options: RtpStreamDecoderOptions) {
    this.options = options;
    this.log = options.logger;
    this.timeline = new RtpTimeline({
      sampleRateHz: options.format.sampleRateHz,
      fillGaps: options.fillGaps,
      maxGapFillMs: options.maxGapFillMs,
      jitterMs: options.jitterMs,
    });
  }

  /**
   * Queues one released packet for decoding. A decoder in another process
   * (G.722 in ffmpeg) gets the payload at once, because it may hold the end
   * of one payload until the next arrives. The chain then waits for the
   * results in order.
   */
  push(released: ReleasedPacket): void {
    if (this.pendingPackets >= MAX_PENDING_PACKETS) {
      this.counters.overflow += 1;
      this.undecodedPackets += 1;
      return;
    }
    const { packet } = released;
    const format = this.options.payloadTypes.get(packet.payloadType);
    const decoder =
      format !== undefined && isAudioEncoding(format.encoding) ? this.decoderFor(packet.payloadType) : undefined;
    if (this.pendingPackets === 0 && decoder !== undefined && !decoder.asynchronous && !this.needsAdapter(decoder)) {
      // Nothing is queued and the decoder is synchronous, so the packet is placed at once.
      // The chain's microtasks would cost more than the decoding.
      try {
        this.decodeAndPlace(released, format!, decoder);
      } catch (error) {
        this.log.error({ err: error, ssrc: packet.ssrc, sequenceNumber: packet.sequenceNumber }, 'rtp packet processing failed');
      }
      return;
    }
    let started: Promise<Float32Array> | undefined;
    if (decoder?.asynchronous === true) {
      try {
        started = Promise.resolve(decoder.decode(packet.payload));
      } catch (error) {
        started = Promise.reject(error as Error);
      }
      // Rejections are handled when the chain reaches this packet.
      started.catch(() => undefined);
    }
    this.pendingPackets += 1;
    this.chain = this.chain.then(async () => {
      try {
        await this.process({ released, format, decoder, started });
      } catch (error) {
        // Every expected failure is handled inside; this guards the chain itself.
        this.log.error({ err: error }, 'rtp packet processing failed');
      } finally {
        this.pendingPackets -= 1;
      }
    });
  }

  /** Resolves once every queued packet is decoded and emitted; then frees the decoders. */
  async finish(): Promise<void> {
    // Ending the input of out-of-process decoders makes them release what they hold.
    const closing = [...this.decoders.values()]
      .filter((decoder) => decoder.asynchronous)
      .map((decoder) => decoder.close().catch(() => undefined));
    await this.chain;
    await Promise.all(closing);
    await Promise.all(
      [...this.decoders.values()]
        .filter((decoder) => !decoder.asynchronous)
        .map((decoder) => decoder.close().catch(() => undefined)),
    );
    this.decoders.clear();
    for (const adapter of this.adapters.values()) {
      adapter.destroy();
    }
    this.adapters.clear();
  }

  private async process(unit: QueuedPacket): Promise<void> {
    const { released, format, decoder } = unit;
    const { packet } = released;
    if (format === undefined || !isAudioEncoding(format.encoding)) {
      this.counters.nonAudio += 1;
      return;
    }
    if (decoder === undefined) {
      this.undecodedPackets += 1;
      return;
    }

    let decoded: Float32Array;
    try {
      decoded = await (unit.started ?? decoder.decode(packet.payload));
    } catch (error) {
      this.countUndecodable(format, packet.ssrc, error);
      return;
    }
    const adapter = await this.adapterFor(decoder);
    this.place(released, format, decoder, decoded, adapter);
  }

  /** Decodes a payload of a synchronous decoder and places it, on the timeline, without an adapter. */
  private decodeAndPlace(released: ReleasedPacket, format: PayloadFormat, decoder: PayloadDecoder): void {
    if (decoder.encodedAs !== undefined && released.packet.payload.length % decoder.channels === 0) {
      // G.711 decodes only if the samples are read, because an output in the same law sends the payload instead.
      this.place(released, format, decoder, undefined, undefined);
      return;
    }
    let decoded: Float32Array;
    try {
      decoded = decoder.decode(released.packet.payload) as Float32Array;
    } catch (error) {
      this.countUndecodable(format, released.packet.ssrc, error);
      return;
    }
    this.place(released, format, decoder, decoded, undefined);
  }

  private countUndecodable(format: PayloadFormat, ssrc: number, error: unknown): void {
    this.counters.undecodable += 1;
    this.undecodedPackets += 1;
    this.reportUndecodable(format, ssrc, error);
  }

  /** True when the decoder's rate or channels differ from the stream's, so its output goes through a FormatAdapter. */
  private needsAdapter(decoder: PayloadDecoder): boolean {
    const target = this.options.format;
    return decoder.sampleRateHz !== target.sampleRateHz || decoder.channels !== target.channels;
  }

  /**
   * Places decoded audio on the timeline, with the fill before it, and
   * emits it. `decoded` is undefined for a G.711 payload not decoded yet.
   */
  private place(
    released: ReleasedPacket,
    format: PayloadFormat,
    decoder: PayloadDecoder,
    decoded: Float32Array | undefined,
    adapter: FormatAdapter | undefined,
  ): void {
    const { packet } = released;
    const decodedFrames = (decoded === undefined ? packet.payload.length : decoded.length) / decoder.channels;
    const target = this.options.format;
    const nominalFrames = Math.round((decodedFrames * target.sampleRateHz) / decoder.sampleRateHz);

    // Packets that failed to decode count as lost, so the timeline fills their time.
    const step = this.timeline.step(
      released,
      released.lostBefore + this.undecodedPackets,
      format.clockRateHz,
      ticksOfFrames(decoder, decodedFrames),
      nominalFrames,
    );
    this.undecodedPackets = 0;
    if (step.discontinuity !== undefined && step.discontinuity !== 'first') {
      this.onDiscontinuity(step.discontinuity, packet.ssrc, released.arrivalMs);
    }

    if (step.fillFrames > 0) {
      this.emitFill(step.fillStartFrame, step.fillFrames, step.concealFrames, decoder, adapter);
    }
    if (adapter === undefined && decoder.encodedAs !== undefined) {
      const { sampleRateHz, channels } = this.options.format;
      const timestampMs = (step.packetStartFrame * 1000) / sampleRateHz;
      this.options.emit(new G711Block(decoder, packet.payload, decoded, sampleRateHz, channels, timestampMs));
      return;
    }
    // `decoded` is set here: only the G.711 branch above receives payloads that were not decoded.
    const samples = adapter === undefined ? decoded! : adapter.process(decoded!);
    this.emitBlock(samples, step.packetStartFrame);
  }

  private decoderFor(payloadType: number): PayloadDecoder | undefined {
    const existing = this.decoders.get(payloadType);
    if (existing !== undefined || this.failedPayloadTypes.has(payloadType)) {
      return existing;
    }
    const format = this.options.payloadTypes.get(payloadType)!;
    try {
      const decoder = createPayloadDecoder(format, this.log);
      this.decoders.set(payloadType, decoder);
      return decoder;
    } catch (error) {
      this.failedPayloadTypes.add(payloadType);
      this.log.error({ err: error, payloadType, rtpmap: format.rtpmap }, 'rtp decoder could not start; packets of this payload type are dropped');
      return undefined;
    }
  }

  private async adapterFor(decoder: PayloadDecoder): Promise<FormatAdapter | undefined> {
    const target = this.options.format;
    if (!this.needsAdapter(decoder)) {
      return undefined;
    }
    const key = `${decoder.sampleRateHz}/${decoder.channels}`;
    let adapter = this.adapters.get(key);
    if (adapter === undefined) {
      adapter = await FormatAdapter.create({ sampleRateHz: decoder.sampleRateHz, channels: decoder.channels }, target);
      this.adapters.set(key, adapter);
      this.log.info(
        { payloadType: decoder.format.payloadType, rtpmap: decoder.format.rtpmap, from: key, to: `${target.sampleRateHz}/${target.channels}` },
        'rtp payload type decodes to another format than the stream started with; converting',
      );
    }
    return adapter;
  }

  private emitFill(
    startFrame: number,
    fillFrames: number,
    concealFrames: number,
    decoder: PayloadDecoder,
    adapter: FormatAdapter | undefined,
  ): void {
    const { sampleRateHz, channels } = this.options.format;
    let position = startFrame;
    if (concealFrames > 0 && decoder.conceal !== undefined) {
      const decoderFrames = Math.round((concealFrames * decoder.sampleRateHz) / sampleRateHz);
      const concealed = decoder.conceal(decoderFrames);
      const samples = adapter === undefined ? concealed : adapter.process(concealed);
      const frames = Math.min(concealFrames, samples.length / channels);
      this.emitBlock(samples.subarray(0, frames * channels), position);
      position += frames;
    }
    const blockFrames = Math.max(1, Math.round((FILL_BLOCK_MS * sampleRateHz) / 1000));
    const endFrame = startFrame + fillFrames;
    while (position < endFrame) {
      const frames = Math.min(blockFrames, endFrame - position);
      this.emitBlock(new Float32Array(frames * channels), position);
      position += frames;
    }
    this.counters.filledFrames += fillFrames;
  }

  private emitBlock(samples: Float32Array, startFrame: number): void {
    if (samples.length === 0) {
      return;
    }
    const { sampleRateHz, channels } = this.options.format;
    this.options.emit({ samples, sampleRateHz, channels, timestampMs: (startFrame * 1000) / sampleRateHz });
  }

  /**
   * Warns once per payload type: a payload type whose packets do not decode
   * is most often mapped to the wrong encoding. Later failures are counted.
   */
  private reportUndecodable(format: PayloadFormat, ssrc: number, error: unknown): void {
    if (this.undecodableReported.has(format.payloadType)) {
      return;
    }
    this.undecodableReported.add(format.payloadType);
    this.log.warn(
      { err: error, payloadType: format.payloadType, rtpmap: format.rtpmap, ssrc },
      `payload type ${format.payloadType} from SSRC ${ssrc} does not decode as ${format.rtpmap}; ` +
        "check that payload_types maps it to the encoding of the sender's SDP a=rtpmap line",
    );
  }

  private onDiscontinuity(reason: DiscontinuityReason, ssrc: number, nowMs: number): void {
    this.counters.discontinuities += 1;
    const lastMs = this.discontinuityLoggedAtMs;
    if (lastMs !== undefined && nowMs - lastMs < DISCONTINUITY_LOG_INTERVAL_MS) {
      return;
    }
    const since = this.counters.discontinuities - this.discontinuitiesLogged;
    this.discontinuityLoggedAtMs = nowMs;
    this.discontinuitiesLogged = this.counters.discontinuities;
    this.log.info({ reason, ssrc, discontinuities: since }, 'rtp stream discontinuity; timeline bridged');
  }
}

/**
 * A block of G.711 audio that carries its payload, so an output in the
 * same law sends the bytes as they came. Its samples are decoded the first
 * time they are read.
 */
class G711Block implements PcmBlock {
  readonly encoding: 'mulaw' | 'alaw';
  private decoded: Float32Array | undefined;

  constructor(
    private readonly decoder: PayloadDecoder,
    readonly data: Buffer,
    decoded: Float32Array | undefined,
    readonly sampleRateHz: number,
    readonly channels: number,
    readonly timestampMs: number,
  ) {
    this.encoding = decoder.encodedAs!;
    this.decoded = decoded;
  }

  /** Payload and law of the block. The block itself serves as this view, which spares an object per packet. */
  get encoded(): NonNullable<PcmBlock['encoded']> {
    return this;
  }

  get samples(): Float32Array {
    this.decoded ??= this.decoder.decode(this.data) as Float32Array;
    return this.decoded;
  }
}

/**
 * Test helpers for the RTP source: a packet builder that writes RFC 3550
 * headers byte by byte, a manual clock, and a stream host that collects
 * what each alias emits.
 */
import { once } from 'node:events';

import type { PcmBlock } from '../../src/audio/format.ts';
import type { RtpSourceConfig } from '../../src/config/types.ts';
import type { RtpStreamHost, RtpStreamRequest } from '../../src/sources/rtp/rtp-receiver.ts';

export interface PacketFields {
  payloadType?: number;
  sequenceNumber?: number;
  timestamp?: number;
  ssrc?: number;
  marker?: boolean;
  csrcs?: number[];
  /** Header extension: profile and 32-bit words of data. */
  extension?: { profile: number; words: number };
  /** Padding bytes to append, the count byte included. */
  paddingBytes?: number;
  payload?: Buffer;
  version?: number;
}

/** Builds an RTP datagram from its fields. */
export function buildRtpPacket(fields: PacketFields = {}): Buffer {
  const csrcs = fields.csrcs ?? [];
  const payload = fields.payload ?? Buffer.alloc(160, 0xff);
  const extensionBytes = fields.extension === undefined ? 0 : 4 + fields.extension.words * 4;
  const paddingBytes = fields.paddingBytes ?? 0;
  const header = Buffer.alloc(12 + csrcs.length * 4 + extensionBytes);
  const version = fields.version ?? 2;
  header[0] = (version << 6) | (paddingBytes > 0 ? 0x20 : 0) | (fields.extension === undefined ? 0 : 0x10) | csrcs.length;
  header[1] = ((fields.marker ?? false) ? 0x80 : 0) | (fields.payloadType ?? 0);
  header.writeUInt16BE((fields.sequenceNumber ?? 0) & 0xffff, 2);
  header.writeUInt32BE((fields.timestamp ?? 0) >>> 0, 4);
  header.writeUInt32BE((fields.ssrc ?? 0x11223344) >>> 0, 8);
  csrcs.forEach((csrc, index) => header.writeUInt32BE(csrc >>> 0, 12 + index * 4));
  if (fields.extension !== undefined) {
    const offset = 12 + csrcs.length * 4;
    header.writeUInt16BE(fields.extension.profile, offset);
    header.writeUInt16BE(fields.extension.words, offset + 2);
    header.fill(0xab, offset + 4, offset + extensionBytes);
  }
  const padding = Buffer.alloc(paddingBytes);
  if (paddingBytes > 0) {
    padding[paddingBytes - 1] = paddingBytes;
  }
  return Buffer.concat([header, payload, padding]);
}

export { ManualClock } from './manual-clock.ts';

/** Returns an RTP source config with the schema's defaults, for tests. */
export function rtpConfig(overrides: Partial<RtpSourceConfig> = {}): RtpSourceConfig {
  return {
    type: 'rtp',
    listen: '127.0.0.1:0',
    payload_types: {},
    jitter_ms: 60,
    fill_gaps: true,
    max_gap_fill_ms: 10000,
    idle_end_ms: 30000,
    max_streams: 64,
    ...overrides,
  };
}

export interface CollectedStream {
  request: RtpStreamRequest;
  /** Blocks read, when the host retains this alias's blocks. */
  blocks: PcmBlock[];
  /** Samples read, retained or not. */
  samples: number;
  ended: Promise<void>;
  endRequested: boolean;
}

/** A host that reads every opened source into memory, as the agent's pipeline would. */
export class CollectingHost implements RtpStreamHost {
  readonly streams = new Map<string, CollectedStream>();
  private readonly waiters: Array<{ alias: string; resolve: (stream: CollectedStream) => void }> = [];
  /** When set, openStream rejects with this error. */
  rejectWith: Error | undefined;
  private readonly retain: (alias: string) => boolean;

  /** `retain` picks the aliases whose blocks are kept; the others are only counted. */
  constructor(options: { retain?: (alias: string) => boolean } = {}) {
    this.retain = options.retain ?? (() => true);
  }

  async openStream(request: RtpStreamRequest): Promise<void> {
    if (this.rejectWith !== undefined) {
      throw this.rejectWith;
    }
    const retain = this.retain(request.alias);
    const ended = once(request.source.readable, 'end').then(() => undefined);
    const stream: CollectedStream = { request, blocks: [], samples: 0, ended, endRequested: false };
    request.source.readable.on('data', (block: PcmBlock) => {
      stream.samples += block.samples.length;
      if (retain) {
        stream.blocks.push(block);
      }
    });
    this.streams.set(request.alias, stream);
    for (const waiter of this.waiters.filter((candidate) => candidate.alias === request.alias)) {
      waiter.resolve(stream);
    }
  }

  async endStream(alias: string): Promise<void> {
    const stream = this.streams.get(alias);
    if (stream !== undefined) {
      stream.endRequested = true;
      stream.request.source.stop();
      await stream.ended;
    }
  }

  /** Resolves when `alias` has been opened. */
  opened(alias: string): Promise<CollectedStream> {
    const existing = this.streams.get(alias);
    if (existing !== undefined) {
      return Promise.resolve(existing);
    }
    return new Promise((resolve) => this.waiters.push({ alias, resolve }));
  }
}

/** Joins the samples of blocks into one array. */
export function joinSamples(blocks: PcmBlock[]): Float32Array {
  const total = blocks.reduce((sum, block) => sum + block.samples.length, 0);
  const joined = new Float32Array(total);
  let offset = 0;
  for (const block of blocks) {
    joined.set(block.samples, offset);
    offset += block.samples.length;
  }
  return joined;
}

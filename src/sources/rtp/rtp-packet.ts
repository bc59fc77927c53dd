/**
 * Parsing of RTP headers (RFC 3550 §5.1) and recognition of RTCP sent to the
 * same port (RFC 5761 §4). Parsing never throws: a datagram that is not a
 * well-formed RTP packet comes back as `malformed` with a reason, so the
 * receiver can count it and move on.
 */

/** RTP and RTCP version 2, the only one in use (RFC 3550 §5.1). */
export const RTP_VERSION = 2;

/** Fixed header: V/P/X/CC, M/PT, sequence number, timestamp, SSRC. */
export const RTP_HEADER_BYTES = 12;

/**
 * Second byte of RTCP packets on a shared port: packet types 192 to 223
 * (SR 200, RR 201, SDES 202, BYE 203, APP 204, feedback 205 and 206 and
 * the rest of the range). RTP payload types 64 to 95 with the marker bit set
 * would look the same, which is why RFC 5761 §4 reserves them.
 */
const RTCP_SECOND_BYTE_MIN = 192;
const RTCP_SECOND_BYTE_MAX = 223;

export interface RtpPacket {
  marker: boolean;
  payloadType: number;
  /** 16-bit sequence number. */
  sequenceNumber: number;
  /** 32-bit media timestamp, in ticks of the payload format's clock. */
  timestamp: number;
  ssrc: number;
  csrcs: readonly number[];
  /** Profile-defined 16 bits of the header extension, when the X bit is set. */
  extensionProfile: number | undefined;
  /** Payload without header, CSRC list, extension or padding; a view of the datagram. */
  payload: Buffer;
}

/** The CSRC list of the packets that have none, which is almost all; one shared array spares an allocation per packet. */
const NO_CSRCS: readonly number[] = Object.freeze([]);

export type MalformedReason =
  | 'too_short'
  | 'bad_version'
  | 'csrc_overrun'
  | 'extension_overrun'
  | 'bad_padding';

export type ParsedDatagram =
  | { kind: 'rtp'; packet: RtpPacket }
  | { kind: 'rtcp' }
  | { kind: 'malformed'; reason: MalformedReason };

/** Parses one UDP datagram as RTP; RTCP is recognised and anything else is reported as malformed. */
export function parseRtpDatagram(datagram: Buffer): ParsedDatagram {
  if (datagram.length < 2) {
    return { kind: 'malformed', reason: 'too_short' };
  }
  const first = datagram[0]!;
  if (first >> 6 !== RTP_VERSION) {
    return { kind: 'malformed', reason: 'bad_version' };
  }
  const second = datagram[1]!;
  if (second >= RTCP_SECOND_BYTE_MIN && second <= RTCP_SECOND_BYTE_MAX) {
    return { kind: 'rtcp' };
  }
  if (datagram.length < RTP_HEADER_BYTES) {
    return { kind: 'malformed', reason: 'too_short' };
  }

  const hasPadding = (first & 0x20) !== 0;
  const hasExtension = (first & 0x10) !== 0;
  const csrcCount = first & 0x0f;

  let offset = RTP_HEADER_BYTES + csrcCount * 4;
  if (offset > datagram.length) {
    return { kind: 'malformed', reason: 'csrc_overrun' };
  }
  let csrcs = NO_CSRCS;
  if (csrcCount > 0) {
    csrcs = Array.from({ length: csrcCount }, (_, index) => datagram.readUInt32BE(RTP_HEADER_BYTES + index * 4));
  }

  let extensionProfile: number | undefined;
  if (hasExtension) {
    // 16 bits of profile data, then the extension's length in 32-bit words
    // not counting this 4-byte header (RFC 3550 §5.3.1).
    if (offset + 4 > datagram.length) {
      return { kind: 'malformed', reason: 'extension_overrun' };
    }
    extensionProfile = datagram.readUInt16BE(offset);
    const extensionWords = datagram.readUInt16BE(offset + 2);
    offset += 4 + extensionWords * 4;
    if (offset > datagram.length) {
      return { kind: 'malformed', reason: 'extension_overrun' };
    }
  }

  let end = datagram.length;
  if (hasPadding) {
    // The last byte counts the padding bytes, itself included (RFC 3550 §5.1),
    // so 0 is invalid and the padding cannot reach into the header.
    const paddingBytes = datagram[datagram.length - 1]!;
    if (paddingBytes === 0 || paddingBytes > datagram.length - offset) {
      return { kind: 'malformed', reason: 'bad_padding' };
    }
    end -= paddingBytes;
  }

  return {
    kind: 'rtp',
    packet: {
      marker: (second & 0x80) !== 0,
      payloadType: second & 0x7f,
      sequenceNumber: datagram.readUInt16BE(2),
      timestamp: datagram.readUInt32BE(4),
      ssrc: datagram.readUInt32BE(8),
      csrcs,
      extensionProfile,
      payload: datagram.subarray(offset, end),
    },
  };
}

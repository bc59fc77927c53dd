/**
 * Payload types an RTP source understands: the static assignments of
 * RFC 3551 §6 that carry audio we decode, plus dynamic types mapped in the
 * config the way SDP's a=rtpmap maps them (`111: "opus/48000/2"`).
 */
import { ConfigError } from '../../errors.ts';

export type PayloadEncoding = 'pcmu' | 'pcma' | 'g722' | 'l16' | 'opus' | 'telephone-event' | 'cn';

/** Media format of a payload type, with the clock of its timestamps. */
export interface PayloadFormat {
  payloadType: number;
  encoding: PayloadEncoding;
  /** Clock of the RTP timestamps, in Hz. */
  clockRateHz: number;
  /** Sample rate of the decoded audio, in Hz; differs from the clock for G.722. */
  sampleRateHz: number;
  channels: number;
  /** The mapping as SDP writes it, for log lines: `PCMU/8000`, `opus/48000/2`. */
  rtpmap: string;
}

/** True for payloads that carry audio; telephone events and comfort noise carry none. */
export function isAudioEncoding(encoding: PayloadEncoding): boolean {
  return encoding !== 'telephone-event' && encoding !== 'cn';
}

/** Static payload types of RFC 3551 §6, Table 4, that this source decodes or recognises. */
const STATIC_RTPMAPS: ReadonlyMap<number, string> = new Map([
  [0, 'PCMU/8000/1'],
  [8, 'PCMA/8000/1'],
  [9, 'G722/8000/1'],
  [10, 'L16/44100/2'],
  [11, 'L16/44100/1'],
  [13, 'CN/8000/1'],
]);

const ENCODING_NAMES: ReadonlyMap<string, PayloadEncoding> = new Map([
  ['pcmu', 'pcmu'],
  ['pcma', 'pcma'],
  ['g722', 'g722'],
  ['l16', 'l16'],
  ['opus', 'opus'],
  ['telephone-event', 'telephone-event'],
  ['cn', 'cn'],
]);

/**
 * Types 64 to 95 with the marker bit set look like RTCP packet types 192 to
 * 223 on a port shared with RTCP, so RFC 5761 §4 rules them out.
 */
const RTCP_CONFLICT_MIN = 64;
const RTCP_CONFLICT_MAX = 95;

const MAX_L16_SAMPLE_RATE_HZ = 192000;
const MAX_CHANNELS = 8;

/** Payload types of one RTP source, static ones first, overridden by the config. */
export class PayloadTypeTable {
  private readonly formats = new Map<number, PayloadFormat>();

  /**
   * Builds the table from the source's `payload_types` setting.
   *
   * @throws ConfigError naming the key when a mapping is malformed or its
   *   encoding, clock rate or channel count is not supported.
   */
  constructor(configured: Readonly<Record<string, string>>, keyPath = 'source.payload_types') {
    for (const [payloadType, rtpmap] of STATIC_RTPMAPS) {
      this.formats.set(payloadType, parseRtpmap(payloadType, rtpmap, keyPath));
    }
    for (const [key, rtpmap] of Object.entries(configured)) {
      const payloadType = Number(key);
      if (!Number.isInteger(payloadType) || payloadType < 0 || payloadType > 127) {
        throw new ConfigError(`${keyPath}: payload type "${key}" must be a number from 0 to 127`, {
          keyPath,
        });
      }
      if (payloadType >= RTCP_CONFLICT_MIN && payloadType <= RTCP_CONFLICT_MAX) {
        throw new ConfigError(
          `${keyPath}.${key}: payload types 64 to 95 collide with RTCP on a shared port (RFC 5761); ` +
            'map the codec to a type from 96 to 127 on the sender and here',
          { keyPath: `${keyPath}.${key}` },
        );
      }
      this.formats.set(payloadType, parseRtpmap(payloadType, rtpmap, `${keyPath}.${key}`));
    }
  }

  /** Returns the format of `payloadType`, or undefined when it is neither static nor configured. */
  get(payloadType: number): PayloadFormat | undefined {
    return this.formats.get(payloadType);
  }
}

/** Parses `ENCODING/CLOCK_RATE[/CHANNELS]`, checking the rules each codec's RTP payload format sets. */
export function parseRtpmap(payloadType: number, rtpmap: string, keyPath: string): PayloadFormat {
  const match = /^([A-Za-z0-9_-]+)\/(\d+)(?:\/(\d+))?$/.exec(rtpmap);
  if (match === null) {
    throw new ConfigError(
      `${keyPath}: "${rtpmap}" is not ENCODING/CLOCK_RATE[/CHANNELS]; write it as in SDP a=rtpmap, such as opus/48000/2`,
      { keyPath },
    );
  }
  const name = match[1]!;
  const clockRateHz = Number(match[2]);
  const channels = match[3] === undefined ? 1 : Number(match[3]);
  const encoding = ENCODING_NAMES.get(name.toLowerCase());
  if (encoding === undefined) {
    throw new ConfigError(
      `${keyPath}: encoding "${name}" is not supported; use PCMU, PCMA, G722, L16, opus, telephone-event or CN`,
      { keyPath },
    );
  }
  if (channels < 1 || channels > MAX_CHANNELS) {
    throw new ConfigError(`${keyPath}: "${rtpmap}" has ${channels} channels; use 1 to ${MAX_CHANNELS}`, { keyPath });
  }

  let sampleRateHz = clockRateHz;
  switch (encoding) {
    case 'pcmu':
    case 'pcma':
      requireClock(rtpmap, clockRateHz, 8000, 'G.711 is sampled at 8000 Hz', keyPath);
      break;
    case 'g722':
      // RFC 3551 §4.5.2: the RTP clock of G.722 is 8000 Hz for historical
      // reasons, although the audio is sampled at 16000 Hz.
      requireClock(rtpmap, clockRateHz, 8000, 'G.722 uses an RTP clock of 8000 Hz although its audio is 16 kHz', keyPath);
      if (channels !== 1) {
        throw new ConfigError(`${keyPath}: "${rtpmap}": G.722 is decoded as mono only; use G722/8000`, { keyPath });
      }
      sampleRateHz = 16000;
      break;
    case 'opus':
      // RFC 7587 §4.1: the clock is 48000 Hz and the rtpmap names 2 channels,
      // whatever rate and channel count the encoder uses.
      requireClock(rtpmap, clockRateHz, 48000, 'Opus always uses an RTP clock of 48000 Hz', keyPath);
      if (channels > 2) {
        throw new ConfigError(`${keyPath}: "${rtpmap}": Opus over RTP has 1 or 2 channels; write opus/48000/2`, {
          keyPath,
        });
      }
      break;
    case 'l16':
      if (clockRateHz < 1 || clockRateHz > MAX_L16_SAMPLE_RATE_HZ) {
        throw new ConfigError(
          `${keyPath}: "${rtpmap}" has a sample rate of ${clockRateHz} Hz; use 1 to ${MAX_L16_SAMPLE_RATE_HZ}`,
          { keyPath },
        );
      }
      break;
    case 'telephone-event':
    case 'cn':
      break;
  }
  return {
    payloadType,
    encoding,
    clockRateHz,
    sampleRateHz,
    channels,
    rtpmap: match[3] === undefined ? `${name}/${clockRateHz}` : `${name}/${clockRateHz}/${channels}`,
  };
}

function requireClock(rtpmap: string, actualHz: number, expectedHz: number, reason: string, keyPath: string): void {
  if (actualHz !== expectedHz) {
    throw new ConfigError(`${keyPath}: "${rtpmap}" has a clock of ${actualHz} Hz; ${reason}, so write ${expectedHz}`, {
      keyPath,
    });
  }
}

/**
 * The message for a payload type the source cannot decode, which names what
 * to change: a mapping to add for a dynamic type, another codec for a static
 * one we do not decode.
 */

/** Static payload types of RFC 3551 §6 that this source does not decode. */
const UNSUPPORTED_STATIC_TYPES: ReadonlyMap<number, string> = new Map([
  [3, 'GSM'],
  [4, 'G723'],
  [5, 'DVI4/8000'],
  [6, 'DVI4/16000'],
  [7, 'LPC'],
  [12, 'QCELP'],
  [14, 'MPA'],
  [15, 'G728'],
  [16, 'DVI4/11025'],
  [17, 'DVI4/22050'],
  [18, 'G729'],
]);

const FIRST_DYNAMIC_TYPE = 96;

export function unmappedPayloadTypeMessage(payloadType: number, ssrc: number): string {
  const staticName = UNSUPPORTED_STATIC_TYPES.get(payloadType);
  if (staticName !== undefined) {
    return (
      `payload type ${payloadType} (${staticName}) from SSRC ${ssrc} is not supported; ` +
      'configure the sender for PCMU, PCMA, G722, L16 or opus'
    );
  }
  const example = payloadType >= FIRST_DYNAMIC_TYPE ? 'opus/48000/2' : 'PCMU/8000';
  return (
    `payload type ${payloadType} from SSRC ${ssrc} is not mapped; add payload_types: {${payloadType}: "${example}"} ` +
    "to the rtp source, with the encoding of the sender's SDP a=rtpmap line for this type"
  );
}

/**
 * Opus decoding of single packets (RFC 6716) with opusscript, libopus
 * compiled to WebAssembly, so no native build or download is needed.
 */
import OpusScript from 'opusscript';

import { AudioFormatError } from '../errors.ts';

/** Rates libopus decodes to. */
export const OPUS_SAMPLE_RATES_HZ = [8000, 12000, 16000, 24000, 48000] as const;
export type OpusSampleRateHz = (typeof OPUS_SAMPLE_RATES_HZ)[number];

/** Largest packet opusscript accepts: 3 frames of 1276 bytes (its MAX_PACKET_SIZE). */
export const OPUS_MAX_PACKET_BYTES = 3828;

/**
 * Concealment length of one opusscript call: it passes its fixed maximum
 * frame size of 60 ms to opus_decode, which conceals that much at once.
 */
const CONCEALMENT_MS = 60;

const INT16_SCALE = 1 / 32768;

/** Decoder state of one Opus stream. Call destroy() when done: the state lives in WebAssembly memory. */
export class OpusDecoder {
  readonly sampleRateHz: OpusSampleRateHz;
  readonly channels: number;
  private decoder: OpusScript | undefined;

  constructor(sampleRateHz: OpusSampleRateHz, channels: 1 | 2) {
    this.sampleRateHz = sampleRateHz;
    this.channels = channels;
    this.decoder = new OpusScript(sampleRateHz, channels, OpusScript.Application.VOIP);
  }

  /**
   * Decodes one packet to interleaved float samples.
   *
   * @throws AudioFormatError when the packet is empty, too long or not valid Opus.
   */
  decode(packet: Uint8Array): Float32Array {
    const decoder = this.requireDecoder();
    if (packet.length === 0 || packet.length > OPUS_MAX_PACKET_BYTES) {
      throw new AudioFormatError(
        `Opus packet of ${packet.length} bytes is outside the valid 1 to ${OPUS_MAX_PACKET_BYTES} bytes`,
      );
    }
    let pcm: Buffer;
    try {
      pcm = decoder.decode(Buffer.from(packet.buffer, packet.byteOffset, packet.length));
    } catch (error) {
      throw new AudioFormatError(`Opus packet of ${packet.length} bytes could not be decoded`, { cause: error });
    }
    return int16ToFloat(pcm);
  }

  /**
   * Returns `frames` sample frames of packet loss concealment, continuing
   * the decoded signal.
   *
   * NOTE: opusscript conceals 60 ms per call, so the decoder state moves on
   * by a multiple of 60 ms even when fewer frames are returned; the next
   * packet's first milliseconds may be slightly off.
   */
  conceal(frames: number): Float32Array {
    const decoder = this.requireDecoder();
    const output = new Float32Array(frames * this.channels);
    const framesPerCall = (this.sampleRateHz * CONCEALMENT_MS) / 1000;
    for (let written = 0; written < frames; written += framesPerCall) {
      const concealed = int16ToFloat(decoder.decode(Buffer.alloc(0)));
      const take = Math.min(frames - written, concealed.length / this.channels);
      output.set(concealed.subarray(0, take * this.channels), written * this.channels);
    }
    return output;
  }

  destroy(): void {
    this.decoder?.delete();
    this.decoder = undefined;
  }

  private requireDecoder(): OpusScript {
    if (this.decoder === undefined) {
      throw new Error('Opus decoder used after destroy(); create a new one');
    }
    return this.decoder;
  }
}

function int16ToFloat(pcm: Buffer): Float32Array {
  const samples = new Float32Array(pcm.length >> 1);
  for (let index = 0; index < samples.length; index++) {
    samples[index] = pcm.readInt16LE(index * 2) * INT16_SCALE;
  }
  return samples;
}

import type { Readable } from 'node:stream';

/**
 * A source of audio for one or more streams: a Readable in object mode that
 * emits `PcmBlock`s (see audio/format.ts) and ends when the audio ends.
 *
 * Live sources (device, RTP, tone) follow their own clock and cannot wait,
 * so whatever consumes them must accept every block at once. Files can wait:
 * their Readable honours backpressure, and with `realtime: true` they are
 * paced by a timer.
 */
export interface AudioSource {
  readonly kind: 'file' | 'tone' | 'rtp' | 'device';
  /** True when the source cannot be paused by backpressure. */
  readonly live: boolean;
  /** Object-mode Readable of PcmBlock. */
  readonly readable: Readable;
  /** Stops producing audio and ends the Readable after what is already produced. */
  stop(): void;
}

import type { Clock } from '../clock.ts';
import type { SourceConfig } from '../config/types.ts';
import { SourceError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { AudioSource } from './audio-source.ts';
import { openDeviceSource } from './device/device-capture-registry.ts';
import { FileSource } from './file-source.ts';
import { ToneSource } from './tone-source.ts';

/** A started source with the PCM format of the blocks it emits. */
export interface OpenedSource {
  source: AudioSource;
  sampleRateHz: number;
  channels: number;
  /** 0-based channels of the source this stream takes; all when undefined. */
  channelSelection?: number[];
}

/** Opens the source a stream's config names. */
export async function openSource(config: SourceConfig, options: { logger: Logger; clock: Clock }): Promise<OpenedSource> {
  switch (config.type) {
    case 'file': {
      const source = await FileSource.open(config, options);
      return { source, sampleRateHz: source.format.sampleRateHz, channels: source.format.channels };
    }
    case 'tone': {
      const source = new ToneSource(config, options);
      return { source, sampleRateHz: config.sample_rate_hz, channels: config.channels };
    }
    case 'device':
      return openDeviceSource(config, options);
    case 'rtp':
      // An RTP source learns its format from its first packets and may start
      // one alias per SSRC, so the agent starts it with RtpReceiver instead.
      throw new SourceError('rtp sources are started by RtpReceiver (sources/rtp/rtp-receiver.ts), not by openSource');
  }
}

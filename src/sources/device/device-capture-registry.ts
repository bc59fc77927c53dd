import type { Clock } from '../../clock.ts';
import type { DeviceSourceConfig } from '../../config/types.ts';
import { SourceError } from '../../errors.ts';
import type { Logger } from '../../logger.ts';
import type { OpenedSource } from '../open-source.ts';
import type { CaptureHost, InputDevice } from './capture-host.ts';
import { DeviceCapture, type CaptureTiming, type DeviceCaptureStats } from './device-capture.ts';
import { selectInputDevice } from './device-selection.ts';
import { DeviceSource } from './device-source.ts';
import { NaudiodonCaptureHost } from './naudiodon-capture-host.ts';

/**
 * A device with at most this many input channels reports its hardware
 * count, and is captured with all of them, so streams that take different
 * channels never make it reopen. ALSA plugin devices (default, pulse, plug)
 * report 32 to 128, the most they convert to, and are opened with the
 * channels the streams take.
 */
const MAX_HARDWARE_CHANNELS = 8;

/** Channels a stream without `source.channels` takes from a plugin device: stereo, or mono when that is all there is. */
const DEFAULT_PLUGIN_CHANNELS = 2;

/** Audio a device source holds for a stream that fell behind, in milliseconds, before it drops new blocks. */
const MAX_BUFFERED_MS = 20_000;

export interface DeviceCaptureRegistryOptions {
  loadHost: () => Promise<CaptureHost>;
  timing?: Partial<CaptureTiming>;
}

export interface OpenDeviceSourceOptions {
  logger: Logger;
  clock: Clock;
}

export interface DeviceCaptureSummary extends DeviceCaptureStats {
  device: string;
  sampleRateHz: number;
  channels: number;
  status: DeviceCapture['status'];
  subscribers: number;
}

interface CaptureEntry {
  capture: DeviceCapture;
  /** Resolves once the capture has started. */
  ready: Promise<DeviceCapture>;
}

/**
 * Open device captures, one per device and rate. Streams whose sources name
 * the same device share one capture and each take their channels from it,
 * so one multi-channel device can feed one alias per speaker.
 */
export class DeviceCaptureRegistry {
  private readonly options: DeviceCaptureRegistryOptions;
  private readonly entries = new Map<string, CaptureEntry>();
  private host: Promise<CaptureHost> | undefined;

  constructor(options: DeviceCaptureRegistryOptions) {
    this.options = options;
  }

  /** Number of device captures open now. */
  get size(): number {
    return this.entries.size;
  }

  /** Counters of every open capture, for stats lines and metrics. */
  stats(): DeviceCaptureSummary[] {
    return [...this.entries.values()].map(({ capture }) => ({
      device: capture.deviceName,
      sampleRateHz: capture.sampleRateHz,
      channels: capture.channels,
      status: capture.status,
      subscribers: capture.subscriberCount,
      ...capture.stats,
    }));
  }

  /**
   * Opens a device source: finds the device, joins its capture or starts one,
   * and returns a source that takes the configured channels.
   *
   * @throws SourceError when naudiodon is missing, no single input device matches, a channel does not exist, or the device cannot be opened.
   */
  async open(config: DeviceSourceConfig, options: OpenDeviceSourceOptions): Promise<OpenedSource> {
    const host = await this.loadHost();
    const device = selectInputDevice(await host.listDevices(), config.device);
    const sampleRateHz = config.sample_rate ?? device.defaultSampleRateHz;
    if (!(sampleRateHz > 0)) {
      throw new SourceError(`input device "${device.name}" reports no default sample rate; set source.sample_rate`);
    }
    const channelSelection = selectChannels(config, device);
    const requiredChannels = Math.max(...channelSelection) + 1;

    const key = `${device.name}\n${sampleRateHz}`;
    const capture = await this.joinCapture(key, host, device, sampleRateHz, requiredChannels, options);
    const source = new DeviceSource({
      channelSelection,
      maxBufferedMs: MAX_BUFFERED_MS,
      onStop: (stopped) => this.release(key, capture, stopped),
      logger: options.logger,
      clock: options.clock,
    });
    capture.subscribe(source);
    options.logger.info(
      {
        device: device.name,
        deviceIndex: device.index,
        sampleRateHz,
        captureChannels: capture.channels,
        channels: channelSelection.map((channel) => channel + 1),
      },
      'device source opened',
    );
    return { source, sampleRateHz, channels: capture.channels, channelSelection };
  }

  /**
   * Closes every capture at once, for a process about to exit without
   * stopping its sources. Call it before `process.exit()`: libuv joins its
   * threadpool at exit, and a read still waiting for audio would block the
   * exit forever. Sources of closed captures get no more blocks.
   */
  async closeAll(): Promise<void> {
    const captures = [...this.entries.values()].map(({ capture }) => capture);
    this.entries.clear();
    await Promise.all(captures.map((capture) => capture.close()));
  }

  private loadHost(): Promise<CaptureHost> {
    if (this.host === undefined) {
      const attempt = this.options.loadHost();
      this.host = attempt;
      attempt.catch(() => {
        if (this.host === attempt) {
          this.host = undefined;
        }
      });
    }
    return this.host;
  }

  private async joinCapture(
    key: string,
    host: CaptureHost,
    device: InputDevice,
    sampleRateHz: number,
    requiredChannels: number,
    options: OpenDeviceSourceOptions,
  ): Promise<DeviceCapture> {
    const existing = this.entries.get(key);
    if (existing !== undefined) {
      const capture = await existing.ready;
      await capture.setChannels(requiredChannels);
      return capture;
    }

    const capture = new DeviceCapture({
      host,
      device,
      sampleRateHz,
      channels: device.maxInputChannels <= MAX_HARDWARE_CHANNELS ? device.maxInputChannels : requiredChannels,
      logger: options.logger.child({ component: 'device-capture', device: device.name }),
      clock: options.clock,
      ...(this.options.timing === undefined ? {} : { timing: this.options.timing }),
    });
    const entry: CaptureEntry = { capture, ready: capture.start().then(() => capture) };
    this.entries.set(key, entry);
    try {
      return await entry.ready;
    } catch (error) {
      if (this.entries.get(key) === entry) {
        this.entries.delete(key);
      }
      throw error;
    }
  }

  private release(key: string, capture: DeviceCapture, source: DeviceSource): void {
    if (capture.unsubscribe(source) > 0) {
      return;
    }
    if (this.entries.get(key)?.capture === capture) {
      this.entries.delete(key);
    }
    void capture.close();
  }
}

/** 0-based capture channels a source takes, checked against the device. */
function selectChannels(config: DeviceSourceConfig, device: InputDevice): number[] {
  if (config.channels === undefined) {
    const count =
      device.maxInputChannels <= MAX_HARDWARE_CHANNELS
        ? device.maxInputChannels
        : Math.min(DEFAULT_PLUGIN_CHANNELS, device.maxInputChannels);
    return Array.from({ length: count }, (_, channel) => channel);
  }
  for (const channel of config.channels) {
    if (channel > device.maxInputChannels) {
      throw new SourceError(
        `source.channels asks for channel ${channel}, but input device "${device.name}" has ` +
          `${device.maxInputChannels} input channel(s); channels count from 1`,
      );
    }
  }
  return config.channels.map((channel) => channel - 1);
}

/**
 * Captures of this process. Every device source shares it, because a sound
 * device can be opened only once, and streams of different jobs can take
 * channels of the same device.
 */
export const deviceCaptures = new DeviceCaptureRegistry({ loadHost: NaudiodonCaptureHost.load });

/** Opens a `device` source through the process's capture registry. */
export function openDeviceSource(config: DeviceSourceConfig, options: OpenDeviceSourceOptions): Promise<OpenedSource> {
  return deviceCaptures.open(config, options);
}

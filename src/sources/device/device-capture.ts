import type { PcmBlock } from '../../audio/format.ts';
import { sleep, type Clock } from '../../clock.ts';
import { SourceError } from '../../errors.ts';
import type { Logger } from '../../logger.ts';
import type { CaptureHost, CaptureReadResult, CaptureStream, InputDevice } from './capture-host.ts';
import { findDeviceByName } from './device-selection.ts';

/** One consumer of a capture: a stream's source that takes some of its channels. */
export interface CaptureSubscriber {
  /** Capture channels this subscriber needs: its highest selected channel (0-based) plus one. */
  readonly requiredChannels: number;
  /**
   * Receives each block with enough channels, timestamped on the capture's
   * clock. Every subscriber gets the same `samples` array, which none may modify.
   */
  deliver(block: PcmBlock): void;
}

export interface CaptureTiming {
  /** Audio per PortAudio callback and per block, in milliseconds. */
  blockMs: number;
  /** Audio that PortAudio's thread can queue while JavaScript is busy, in milliseconds, before input overflows. */
  queueMs: number;
  /** A stream that delivers no block for this long has failed, in milliseconds. */
  stallTimeoutMs: number;
  /** First delay before reopening a failed device, in milliseconds; doubled after each failed attempt. */
  reopenInitialDelayMs: number;
  /** Cap of the reopen delay, in milliseconds. */
  reopenMaxDelayMs: number;
  /** Deadline of closing a stream, in milliseconds; a stream that misses it is abandoned. */
  closeTimeoutMs: number;
  /** Minimum time between two overflow warnings, in milliseconds; overflows in between are counted. */
  warnIntervalMs: number;
}

export const DEFAULT_CAPTURE_TIMING: CaptureTiming = {
  // Near a typical sound-server period; 50 reads a second cost little.
  blockMs: 20,
  queueMs: 2000,
  // Devices deliver a period every few to a few hundred milliseconds; 2 s of nothing is a failure.
  stallTimeoutMs: 2000,
  reopenInitialDelayMs: 250,
  reopenMaxDelayMs: 10_000,
  closeTimeoutMs: 5000,
  warnIntervalMs: 10_000,
};

export interface DeviceCaptureOptions {
  host: CaptureHost;
  device: InputDevice;
  sampleRateHz: number;
  channels: number;
  logger: Logger;
  clock: Clock;
  timing?: Partial<CaptureTiming>;
}

export interface DeviceCaptureStats {
  capturedFrames: number;
  /** Input overflows PortAudio reported; each lost at least one block. */
  inputOverflows: number;
  /** Frames known to be lost to overflows. PortAudio does not say how many frames the overflow itself lost. */
  lostFrames: number;
  /** Failures of the open stream: read errors, unexpected ends and stalls. */
  failures: number;
  /** Streams opened again after a failure or a change of channel count. */
  reopens: number;
  /** Time without audio between the last block of a stream and the start of its replacement, summed, in ms. */
  outageMs: number;
}

/**
 * Capture states:
 *
 *   idle --start()--> capturing --read failed / stream ended / no block for stallTimeoutMs--> recovering
 *   capturing --setChannels(more)--> recovering (stream replaced at once)
 *   recovering --stream opened--> capturing
 *   recovering --attempt failed--> recovering (after a doubled delay)
 *   idle / capturing / recovering --close()--> closed
 */
interface OpenedStream {
  stream: CaptureStream;
  channels: number;
}

type CaptureState =
  | { status: 'idle' }
  | { status: 'capturing'; stream: CaptureStream; channels: number }
  | { status: 'recovering'; reason: string; controller: AbortController }
  | { status: 'closed' };

/**
 * One input stream of a sound device, shared by every stream of the config
 * that names the same device and rate: it reads blocks from PortAudio and
 * hands each to all subscribers.
 *
 * Timestamps count the frames captured since the first start. When a
 * stream fails, the capture reopens the device with backoff while the
 * subscribers stay open, and the time without audio is added to the clock,
 * so the outage shows as a jump in `timestampMs` instead of invented silence.
 */
export class DeviceCapture {
  readonly sampleRateHz: number;
  private device: InputDevice;
  private channelCount: number;
  private readonly host: CaptureHost;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly timing: CaptureTiming;
  private readonly blockFrames: number;
  private readonly subscribers = new Set<CaptureSubscriber>();
  private state: CaptureState = { status: 'idle' };
  /** Position of the next block on the capture clock, in frames, gaps included. */
  private positionFrames = 0;
  private lastAudioAtMs = 0;
  private watchdog: NodeJS.Timeout | undefined;
  private lastOverflowWarningAtMs: number | undefined;
  private overflowsSinceWarning = 0;
  private readonly counters: DeviceCaptureStats = {
    capturedFrames: 0,
    inputOverflows: 0,
    lostFrames: 0,
    failures: 0,
    reopens: 0,
    outageMs: 0,
  };

  constructor(options: DeviceCaptureOptions) {
    this.host = options.host;
    this.device = options.device;
    this.sampleRateHz = options.sampleRateHz;
    this.channelCount = options.channels;
    this.log = options.logger;
    this.clock = options.clock;
    this.timing = { ...DEFAULT_CAPTURE_TIMING, ...options.timing };
    this.blockFrames = Math.max(1, Math.round((this.sampleRateHz * this.timing.blockMs) / 1000));
  }

  get deviceName(): string {
    return this.device.name;
  }

  /** Channels of the captured blocks, or of the next stream while the device is reopened. */
  get channels(): number {
    return this.channelCount;
  }

  get status(): CaptureState['status'] {
    return this.state.status;
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  get stats(): DeviceCaptureStats {
    return { ...this.counters };
  }

  /**
   * Opens the device and starts reading.
   *
   * @throws SourceError when the device cannot be opened; the capture is then closed.
   */
  async start(): Promise<void> {
    if (this.state.status !== 'idle') {
      throw new SourceError(`device capture of "${this.device.name}" was already started`);
    }
    const request = this.request(this.device);
    let stream: CaptureStream;
    try {
      stream = await this.host.openCapture(request);
    } catch (error) {
      this.setState({ status: 'closed' }, 'opening failed');
      throw error;
    }
    this.log.info(
      {
        deviceIndex: this.device.index,
        hostApi: this.device.hostApi,
        sampleRateHz: this.sampleRateHz,
        channels: request.channels,
        sampleFormat: stream.sampleFormat,
        blockMs: this.timing.blockMs,
      },
      'device capture started',
    );
    this.enterCapturing(stream, request.channels);
  }

  subscribe(subscriber: CaptureSubscriber): void {
    this.subscribers.add(subscriber);
  }

  /** Returns the number of subscribers left. */
  unsubscribe(subscriber: CaptureSubscriber): number {
    this.subscribers.delete(subscriber);
    return this.subscribers.size;
  }

  /**
   * Captures at least `channels` channels from now on. A running stream is
   * replaced at once, which leaves a short gap for every subscriber.
   *
   * @throws SourceError when the device cannot be opened with more channels; the capture goes back to the old count.
   */
  async setChannels(channels: number): Promise<void> {
    if (channels <= this.channelCount || this.state.status === 'closed') {
      return;
    }
    const previous = this.channelCount;
    this.channelCount = channels;
    await this.replaceForChannels(previous);
  }

  /** Stops reading and closes the device. Subscribers get no more blocks. */
  async close(): Promise<void> {
    const previous = this.state;
    if (previous.status === 'closed') {
      return;
    }
    this.setState({ status: 'closed' }, 'closed');
    this.subscribers.clear();
    if (previous.status === 'recovering') {
      previous.controller.abort(new Error('device capture closed'));
    }
    if (previous.status === 'capturing') {
      await this.closeStream(previous.stream);
    }
    this.log.info({ ...this.counters }, 'device capture closed');
  }

  /**
   * Replaces the running stream with one of `channelCount` channels. While
   * the device is being reopened there is nothing to replace, because the
   * reopen uses the new count.
   */
  private async replaceForChannels(previous: number): Promise<void> {
    if (this.state.status !== 'capturing') {
      return;
    }
    const { stream } = this.state;
    const channels = this.channelCount;
    const controller = new AbortController();
    this.setState({ status: 'recovering', reason: `${channels} channels requested`, controller }, 'channel count change');
    await this.closeStream(stream);
    try {
      const next = await this.openAgain();
      this.resume(next, controller);
    } catch (error) {
      this.channelCount = previous;
      this.log.warn({ err: error, channels, restoredChannels: previous }, 'opening the device with more channels failed');
      void this.reopenWithBackoff(controller, { immediate: true });
      throw error;
    }
  }

  private enterCapturing(stream: CaptureStream, channels: number): void {
    this.setState({ status: 'capturing', stream, channels }, 'stream open');
    this.lastAudioAtMs = this.clock.nowMs();
    this.armWatchdog();
    void this.readLoop(stream);
    if (channels < this.channelCount) {
      // A stream joined for more channels while this one was opening. Its errors are logged in there.
      this.replaceForChannels(channels).catch(() => undefined);
    }
  }

  private async readLoop(stream: CaptureStream): Promise<void> {
    for (;;) {
      let result: CaptureReadResult;
      try {
        result = await stream.read();
      } catch (error) {
        result = { kind: 'failed', message: (error as Error).message };
      }
      if (this.state.status !== 'capturing' || this.state.stream !== stream) {
        return;
      }
      switch (result.kind) {
        case 'data':
          this.onBlock(result.samples, this.state.channels);
          break;
        case 'overflow':
          this.onOverflow(result.lostFrames);
          break;
        case 'failed':
          void this.fail(`input stream failed: ${result.message}`);
          return;
        case 'ended':
          void this.fail('input stream ended unexpectedly');
          return;
      }
    }
  }

  private onBlock(samples: Float32Array, channels: number): void {
    const frames = samples.length / channels;
    const block: PcmBlock = {
      samples,
      sampleRateHz: this.sampleRateHz,
      channels,
      timestampMs: (this.positionFrames * 1000) / this.sampleRateHz,
    };
    this.positionFrames += frames;
    this.counters.capturedFrames += frames;
    this.lastAudioAtMs = this.clock.nowMs();
    for (const subscriber of this.subscribers) {
      if (subscriber.requiredChannels <= channels) {
        subscriber.deliver(block);
      }
    }
  }

  private onOverflow(lostFrames: number): void {
    this.counters.inputOverflows += 1;
    this.counters.lostFrames += lostFrames;
    this.positionFrames += lostFrames;
    this.overflowsSinceWarning += 1;
    const nowMs = this.clock.nowMs();
    if (this.lastOverflowWarningAtMs !== undefined && nowMs - this.lastOverflowWarningAtMs < this.timing.warnIntervalMs) {
      return;
    }
    this.log.warn(
      {
        inputOverflows: this.counters.inputOverflows,
        overflowsSinceLastWarning: this.overflowsSinceWarning,
        lostFrames: this.counters.lostFrames,
      },
      'input overflow: the device captured audio that was not read in time and is lost',
    );
    this.lastOverflowWarningAtMs = nowMs;
    this.overflowsSinceWarning = 0;
  }

  /** Replaces a failed stream: closes it, then reopens the device with backoff. */
  private async fail(reason: string): Promise<void> {
    if (this.state.status !== 'capturing') {
      return;
    }
    const { stream } = this.state;
    const controller = new AbortController();
    this.counters.failures += 1;
    this.log.warn(
      { reason, failures: this.counters.failures, subscribers: this.subscribers.size },
      'device capture failed; reopening the device',
    );
    this.setState({ status: 'recovering', reason, controller }, reason);
    await this.closeStream(stream);
    await this.reopenWithBackoff(controller, { immediate: false });
  }

  private async reopenWithBackoff(controller: AbortController, options: { immediate: boolean }): Promise<void> {
    const { signal } = controller;
    for (let attempt = 1; ; attempt++) {
      const exponent = options.immediate ? attempt - 2 : attempt - 1;
      const delayMs =
        exponent < 0 ? 0 : Math.min(this.timing.reopenMaxDelayMs, this.timing.reopenInitialDelayMs * 2 ** Math.min(exponent, 30));
      try {
        if (delayMs > 0) {
          await sleep(delayMs, signal, this.clock);
        }
      } catch {
        return;
      }
      if (signal.aborted) {
        return;
      }
      try {
        const opened = await this.openAgain();
        this.resume(opened, controller, attempt);
        return;
      } catch (error) {
        if (signal.aborted) {
          return;
        }
        this.log.warn({ err: error, attempt, channels: this.channelCount }, 'reopening the input device failed; retrying');
      }
    }
  }

  /** Finds the device again by name, because its index can change, and opens it. */
  private async openAgain(): Promise<OpenedStream> {
    const devices = await this.host.listDevices();
    const device = findDeviceByName(devices, this.device.name);
    if (device === undefined) {
      throw new SourceError(`input device "${this.device.name}" not found; retrying until it returns`, {
        retryable: true,
      });
    }
    this.device = device;
    const request = this.request(device);
    return { stream: await this.host.openCapture(request), channels: request.channels };
  }

  /** Switches to a reopened stream, unless the capture was closed meanwhile; counts the gap on the clock. */
  private resume({ stream, channels }: OpenedStream, controller: AbortController, attempt = 1): void {
    if (this.state.status !== 'recovering' || this.state.controller !== controller) {
      void this.closeStream(stream);
      return;
    }
    const outageMs = Math.round(Math.max(0, this.clock.nowMs() - this.lastAudioAtMs));
    this.positionFrames += Math.round((outageMs * this.sampleRateHz) / 1000);
    this.counters.outageMs += outageMs;
    this.counters.reopens += 1;
    this.log.info(
      {
        attempt,
        outageMs,
        deviceIndex: this.device.index,
        channels,
        reopens: this.counters.reopens,
      },
      'input device reopened',
    );
    this.enterCapturing(stream, channels);
  }

  private async closeStream(stream: CaptureStream): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timed out'>((resolve) => {
      timer = this.clock.setTimeout(() => resolve('timed out'), this.timing.closeTimeoutMs);
    });
    try {
      const outcome = await Promise.race([stream.close().then(() => 'closed' as const), timedOut]);
      if (outcome === 'timed out') {
        this.log.error({ closeTimeoutMs: this.timing.closeTimeoutMs }, 'input stream did not close in time; abandoning it');
      }
    } catch (error) {
      this.log.warn({ err: error }, 'closing the input stream failed');
    } finally {
      if (timer !== undefined) {
        this.clock.clearTimeout(timer);
      }
    }
  }

  private armWatchdog(): void {
    this.disarmWatchdog();
    // Checking twice per timeout detects a stall within 1.5 timeouts at most.
    this.watchdog = this.clock.setTimeout(() => this.checkForStall(), this.timing.stallTimeoutMs / 2);
    this.watchdog.unref?.();
  }

  private disarmWatchdog(): void {
    if (this.watchdog !== undefined) {
      this.clock.clearTimeout(this.watchdog);
      this.watchdog = undefined;
    }
  }

  private checkForStall(): void {
    this.watchdog = undefined;
    if (this.state.status !== 'capturing') {
      return;
    }
    const silentMs = this.clock.nowMs() - this.lastAudioAtMs;
    if (silentMs >= this.timing.stallTimeoutMs) {
      void this.fail(`no audio for ${Math.round(silentMs)} ms`);
      return;
    }
    this.armWatchdog();
  }

  private request(device: InputDevice): Parameters<CaptureHost['openCapture']>[0] {
    return {
      device,
      channels: this.channelCount,
      sampleRateHz: this.sampleRateHz,
      blockFrames: this.blockFrames,
      queueBlocks: Math.max(2, Math.ceil(this.timing.queueMs / this.timing.blockMs)),
    };
  }

  private setState(next: CaptureState, reason: string): void {
    const from = this.state.status;
    this.state = next;
    if (next.status !== 'capturing') {
      this.disarmWatchdog();
    }
    this.log.debug({ from, to: next.status, reason }, 'device capture state changed');
  }
}

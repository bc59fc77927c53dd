import { setTimeout as delay } from 'node:timers/promises';

import { SourceError } from '../../errors.ts';
import type { CaptureHost, CaptureReadResult, CaptureRequest, CaptureSampleFormat, CaptureStream, InputDevice } from './capture-host.ts';
import { loadNaudiodon, type NaudiodonAddon, type NaudiodonStream } from './naudiodon-loader.ts';

/** Value of `defaultInput` for a host API without a default input device (paNoDevice as uint32). */
const NO_DEVICE = 4294967295;

/** libuv's threadpool size when UV_THREADPOOL_SIZE is not set. */
const DEFAULT_THREADPOOL_SIZE = 4;

/**
 * Threadpool threads left for everything else: file writes, DNS lookups and
 * closing a stream, which also runs on the threadpool.
 */
const RESERVED_THREADPOOL_THREADS = 2;

/** PortAudio's text for paSampleFormatNotSupported, the one open error worth a retry in the other format. */
const SAMPLE_FORMAT_NOT_SUPPORTED_TEXT = 'Sample format not supported';

/**
 * Maximum wait for earlier closes before listing or opening. A close that
 * hangs (PortAudio joining a stuck thread) must not block every later open.
 */
const SETTLE_TIMEOUT_MS = 5000;

/**
 * PortAudio through naudiodon's addon.
 *
 * Each open stream keeps one libuv threadpool thread waiting in a blocking
 * read, so `openCapture` rejects a stream that would leave fewer than two
 * threads for the rest of the process. PortAudio is not thread-safe, and the
 * addon initialises and terminates it on the main thread (listing, opening)
 * and on the threadpool (closing). So listing and opening first wait for the
 * closes in progress.
 *
 * NOTE: listing and opening run on the main thread, and while no stream is
 * open PortAudio scans every device again each time, so they block the
 * event loop for the length of that scan.
 */
export class NaudiodonCaptureHost implements CaptureHost {
  private readonly addon: NaudiodonAddon;
  private readonly closing = new Set<Promise<void>>();
  private openStreamCount = 0;

  constructor(addon: NaudiodonAddon) {
    this.addon = addon;
  }

  /** @throws NaudiodonUnavailableError with install instructions when naudiodon cannot be loaded. */
  static async load(): Promise<NaudiodonCaptureHost> {
    const { addon } = await loadNaudiodon();
    return new NaudiodonCaptureHost(addon);
  }

  async listDevices(): Promise<InputDevice[]> {
    await this.settle();
    let devices: ReturnType<NaudiodonAddon['getDevices']>;
    let hostApis: ReturnType<NaudiodonAddon['getHostAPIs']>;
    try {
      devices = this.addon.getDevices();
      hostApis = this.addon.getHostAPIs();
    } catch (error) {
      throw new SourceError(`listing sound devices failed: ${(error as Error).message}`);
    }
    const defaultInput = hostApis.HostAPIs[hostApis.defaultHostAPI]?.defaultInput ?? NO_DEVICE;
    return devices.map((device) => ({
      index: device.id,
      name: device.name,
      hostApi: device.hostAPIName,
      maxInputChannels: device.maxInputChannels,
      defaultSampleRateHz: device.defaultSampleRate,
      isDefaultInput: device.id === defaultInput,
    }));
  }

  async openCapture(request: CaptureRequest): Promise<CaptureStream> {
    await this.settle();
    const threadpoolSize = readThreadpoolSize();
    const maxStreams = threadpoolSize - RESERVED_THREADPOOL_THREADS;
    if (this.openStreamCount + 1 > maxStreams) {
      throw new SourceError(
        `cannot open input device "${request.device.name}": it would be device capture ${this.openStreamCount + 1}, ` +
          `but UV_THREADPOOL_SIZE=${threadpoolSize} leaves room for ${Math.max(maxStreams, 0)} ` +
          `(each capture keeps one libuv threadpool thread waiting for audio); ` +
          `set UV_THREADPOOL_SIZE to at least ${this.openStreamCount + 1 + RESERVED_THREADPOOL_THREADS} in the agent's environment`,
      );
    }

    let stream: NaudiodonStream;
    let sampleFormat: CaptureSampleFormat = 'int16';
    try {
      // 16-bit first, because the output encodings carry at most 16 bits and
      // PortAudio converts nothing for the many devices and loopbacks that
      // capture 16-bit. Float is the fallback for devices without 16-bit.
      stream = this.create(request, sampleFormat);
    } catch (error) {
      if (!(error as Error).message.includes(SAMPLE_FORMAT_NOT_SUPPORTED_TEXT)) {
        throw openFailed(request, error);
      }
      sampleFormat = 'float32';
      try {
        stream = this.create(request, sampleFormat);
      } catch (floatError) {
        throw openFailed(request, floatError);
      }
    }

    try {
      stream.start();
    } catch (error) {
      await this.quit(stream);
      throw openFailed(request, error);
    }
    this.openStreamCount += 1;
    return new NaudiodonCaptureStream(stream, request, sampleFormat, () => this.release(stream));
  }

  /**
   * NOTE: when opening fails, naudiodon 2.3.6 leaves PortAudio initialised,
   * so later device lists repeat the list of that moment: a device plugged
   * in afterwards is found only after the agent restarts.
   */
  private create(request: CaptureRequest, sampleFormat: CaptureSampleFormat): NaudiodonStream {
    return this.addon.create({
      inOptions: {
        deviceId: request.device.index,
        channelCount: request.channels,
        sampleFormat: sampleFormat === 'int16' ? 16 : 1,
        sampleRate: request.sampleRateHz,
        framesPerBuffer: request.blockFrames,
        maxQueue: request.queueBlocks,
        closeOnError: true,
      },
    });
  }

  private async release(stream: NaudiodonStream): Promise<void> {
    this.openStreamCount -= 1;
    await this.quit(stream);
  }

  private async quit(stream: NaudiodonStream): Promise<void> {
    const done = stream.quit('ABORT');
    this.closing.add(done);
    try {
      await done;
    } finally {
      this.closing.delete(done);
    }
  }

  private async settle(): Promise<void> {
    if (this.closing.size === 0) {
      return;
    }
    const timeout = new AbortController();
    const timedOut = delay(SETTLE_TIMEOUT_MS, undefined, { ref: false, signal: timeout.signal }).catch(() => undefined);
    try {
      await Promise.race([Promise.allSettled([...this.closing]), timedOut]);
    } finally {
      timeout.abort();
    }
  }
}

class NaudiodonCaptureStream implements CaptureStream {
  readonly sampleFormat: CaptureSampleFormat;
  private readonly stream: NaudiodonStream;
  private readonly blockFrames: number;
  private readonly blockBytes: number;
  private readonly onClose: () => Promise<void>;
  private closed: Promise<void> | undefined;

  constructor(stream: NaudiodonStream, request: CaptureRequest, sampleFormat: CaptureSampleFormat, onClose: () => Promise<void>) {
    this.stream = stream;
    this.sampleFormat = sampleFormat;
    this.blockFrames = request.blockFrames;
    this.blockBytes = request.blockFrames * request.channels * (sampleFormat === 'int16' ? 2 : 4);
    this.onClose = onClose;
  }

  async read(): Promise<CaptureReadResult> {
    if (this.closed !== undefined) {
      return { kind: 'ended' };
    }
    const result = await this.stream.read(this.blockBytes);
    if (result.err !== undefined) {
      // The addon reports a PortAudio status flag by failing the read and
      // dropping the block it had taken from its queue, so that block is lost too.
      return result.err.includes('input overflow')
        ? { kind: 'overflow', lostFrames: this.blockFrames }
        : { kind: 'failed', message: result.err.trim() };
    }
    // A partial last block after close is dropped, because the capture that read it is closing.
    if (result.finished === true || result.buf === undefined || result.buf.length < this.blockBytes) {
      return { kind: 'ended' };
    }
    return { kind: 'data', samples: toFloat(result.buf, this.sampleFormat) };
  }

  close(): Promise<void> {
    this.closed ??= this.onClose();
    return this.closed;
  }
}

/** Converts native-endian PCM from PortAudio to float; 16-bit values k become exactly k / 32768. */
function toFloat(buffer: Buffer, sampleFormat: CaptureSampleFormat): Float32Array {
  if (sampleFormat === 'float32') {
    // Copied, because typed-array views need 4-byte alignment and the buffer's offset is not guaranteed.
    const samples = new Float32Array(buffer.length / 4);
    new Uint8Array(samples.buffer).set(buffer);
    return samples;
  }
  const ints =
    buffer.byteOffset % 2 === 0
      ? new Int16Array(buffer.buffer, buffer.byteOffset, buffer.length / 2)
      : new Int16Array(Uint8Array.from(buffer).buffer);
  const samples = new Float32Array(ints.length);
  for (let index = 0; index < ints.length; index++) {
    samples[index] = ints[index]! / 32768;
  }
  return samples;
}

/** Wraps PortAudio's error text; the native error has no stack worth keeping as a cause. */
function openFailed(request: CaptureRequest, error: unknown): SourceError {
  const { device } = request;
  return new SourceError(
    `cannot open input device "${device.name}" (index ${device.index}, ${device.hostApi}) at ${request.sampleRateHz} Hz ` +
      `with ${request.channels} channel(s): ${(error as Error).message}; check source.sample_rate ` +
      `(the device's default is ${device.defaultSampleRateHz} Hz) and source.channels, or run "modulate-agent devices"`,
    { retryable: true },
  );
}

function readThreadpoolSize(): number {
  const configured = Number.parseInt(process.env['UV_THREADPOOL_SIZE'] ?? '', 10);
  // NOTE: libuv reads UV_THREADPOOL_SIZE once, at the first threadpool use;
  // a value set later in the process is counted here but has no effect.
  return Number.isInteger(configured) && configured > 0 ? Math.min(configured, 1024) : DEFAULT_THREADPOOL_SIZE;
}

/**
 * What device capture needs from an audio library: a device list and input
 * streams that deliver interleaved float PCM. `NaudiodonCaptureHost`
 * implements it with PortAudio; unit tests of the capture state machine
 * script their own host.
 */

/** A PortAudio device, as `modulate-agent devices` lists it. */
export interface InputDevice {
  /** PortAudio device index; it can change when devices are added or removed. */
  index: number;
  name: string;
  /** Host API (sound system) of the device, such as ALSA, CoreAudio or WASAPI. */
  hostApi: string;
  /** 0 for output-only devices. ALSA plugin devices (default, pulse, plug) report the most they convert to, up to 128. */
  maxInputChannels: number;
  defaultSampleRateHz: number;
  isDefaultInput: boolean;
}

/** Sample format of the device stream; blocks are float either way. */
export type CaptureSampleFormat = 'int16' | 'float32';

export interface CaptureRequest {
  device: InputDevice;
  channels: number;
  sampleRateHz: number;
  /** Frames per PortAudio callback and per read. */
  blockFrames: number;
  /** Blocks buffered between PortAudio's thread and JavaScript before input overflows. */
  queueBlocks: number;
}

export type CaptureReadResult =
  /** One block of `blockFrames` interleaved samples per channel, in [-1, 1). */
  | { kind: 'data'; samples: Float32Array }
  /** PortAudio flagged an input overflow; at least `lostFrames` frames are missing. */
  | { kind: 'overflow'; lostFrames: number }
  /** The stream reported an error other than an overflow. */
  | { kind: 'failed'; message: string }
  /** The stream was closed. */
  | { kind: 'ended' };

/** An open, started input stream. One read may be pending at a time. */
export interface CaptureStream {
  readonly sampleFormat: CaptureSampleFormat;
  read(): Promise<CaptureReadResult>;
  /** Stops the stream and ends a pending read. Safe to call more than once. */
  close(): Promise<void>;
}

export interface CaptureHost {
  /** Every device, including output-only ones, in PortAudio index order. */
  listDevices(): Promise<InputDevice[]>;
  /**
   * Opens and starts an input stream.
   *
   * @throws SourceError naming the device, rate and channel count when the stream cannot be opened.
   */
  openCapture(request: CaptureRequest): Promise<CaptureStream>;
}

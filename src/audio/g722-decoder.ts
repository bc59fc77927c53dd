/**
 * G.722 decoding (ITU-T G.722, 64 kbit/s mode) by an ffmpeg child process
 * per stream, through prism-media's FFmpeg wrapper. No maintained G.722
 * library exists on npm, and ffmpeg's decoder is the one voice tools
 * already trust.
 *
 * Every input byte decodes to exactly two 16 kHz samples (one 6-bit
 * low-band and one 2-bit high-band code per pair of samples, split by the
 * QMF). The output of each decode() call therefore has a known length, and
 * the calls resolve in order.
 */
import prism from 'prism-media';

import { SourceError } from '../errors.ts';
import type { Logger } from '../logger.ts';

export const G722_SAMPLE_RATE_HZ = 16000;

/** Output bytes of s16le per input byte: two 16-bit samples. */
const OUTPUT_BYTES_PER_INPUT_BYTE = 4;

/** Input bytes waiting in ffmpeg at most, about 8 s of audio; beyond it decode() rejects. */
const MAX_PENDING_INPUT_BYTES = 64000;

const FFMPEG_ARGS = [
  '-hide_banner',
  '-loglevel',
  'error',
  // A probe of 32 bytes starts decoding at once; the default probe waits
  // for megabytes of input, which on a live pipe means seconds.
  '-probesize',
  '32',
  '-f',
  'g722',
  '-i',
  'pipe:0',
  '-f',
  's16le',
  '-acodec',
  'pcm_s16le',
  '-flush_packets',
  '1',
];

interface PendingDecode {
  outputBytes: number;
  chunks: Buffer[];
  receivedBytes: number;
  resolve: (samples: Float32Array) => void;
  reject: (error: Error) => void;
}

/** One G.722 stream decoded by its own ffmpeg process. Call close() when done. */
export class G722Decoder {
  readonly sampleRateHz = G722_SAMPLE_RATE_HZ;
  readonly channels = 1;
  private readonly ffmpeg: prism.FFmpeg;
  private readonly log: Logger;
  private readonly pending: PendingDecode[] = [];
  private pendingInputBytes = 0;
  private failure: Error | undefined;
  private inputEnded = false;
  private readonly exited: Promise<void>;
  private stderrTail = '';

  /** @throws SourceError when ffmpeg cannot be found or started. */
  constructor(options: { logger: Logger }) {
    this.log = options.logger;
    try {
      this.ffmpeg = new prism.FFmpeg({ args: [...FFMPEG_ARGS] });
    } catch (error) {
      throw new SourceError('G.722 needs ffmpeg, which was not found; install it (apt-get install ffmpeg) or send another codec', {
        cause: error,
      });
    }
    // prism-media re-emits errors of ffmpeg's pipes on the wrapper; the
    // exit handler below reports the failure that matters.
    this.ffmpeg.on('error', () => {});
    const child = this.ffmpeg.process;
    child.stdout?.on('data', (data: Buffer) => this.onOutput(data));
    child.stderr?.on('data', (data: Buffer) => {
      this.stderrTail = (this.stderrTail + data.toString()).slice(-500);
    });
    // Writes after ffmpeg died fail with EPIPE; the exit handler reports it.
    child.stdin?.on('error', () => {});
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        if (this.pending.length > 0 || (code !== 0 && signal === null)) {
          this.fail(new SourceError(`G.722 decoder (ffmpeg) exited with ${signal ?? code}: ${this.stderrTail.trim()}`));
        }
        resolve();
      });
      child.once('error', (error) => {
        this.fail(new SourceError(`G.722 decoder (ffmpeg) failed: ${error.message}`, { cause: error }));
        resolve();
      });
    });
  }

  /** Decodes one payload; resolves with its 2 × length samples once ffmpeg has produced them. */
  decode(payload: Uint8Array): Promise<Float32Array> {
    if (this.failure !== undefined) {
      return Promise.reject(this.failure);
    }
    if (this.inputEnded) {
      return Promise.reject(new SourceError('G.722 decoder is closed; payload dropped'));
    }
    if (payload.length === 0) {
      return Promise.resolve(new Float32Array(0));
    }
    if (this.pendingInputBytes + payload.length > MAX_PENDING_INPUT_BYTES) {
      return Promise.reject(new SourceError('G.722 decoder (ffmpeg) is not keeping up; payload dropped'));
    }
    return new Promise((resolve, reject) => {
      this.pending.push({
        outputBytes: payload.length * OUTPUT_BYTES_PER_INPUT_BYTE,
        chunks: [],
        receivedBytes: 0,
        resolve,
        reject,
      });
      this.pendingInputBytes += payload.length;
      this.ffmpeg.process.stdin?.write(Buffer.from(payload));
    });
  }

  /** Ends ffmpeg's input, lets it decode what it holds, and waits for it to exit. */
  async close(): Promise<void> {
    this.inputEnded = true;
    this.ffmpeg.process.stdin?.end();
    const timer = setTimeout(() => this.ffmpeg.process.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(timer);
  }

  private onOutput(data: Buffer): void {
    let offset = 0;
    while (offset < data.length) {
      const head = this.pending[0];
      if (head === undefined) {
        this.log.warn({ bytes: data.length - offset }, 'G.722 decoder produced more audio than it was given; extra dropped');
        return;
      }
      const take = Math.min(head.outputBytes - head.receivedBytes, data.length - offset);
      head.chunks.push(data.subarray(offset, offset + take));
      head.receivedBytes += take;
      offset += take;
      if (head.receivedBytes === head.outputBytes) {
        this.pending.shift();
        this.pendingInputBytes -= head.outputBytes / OUTPUT_BYTES_PER_INPUT_BYTE;
        head.resolve(s16leToFloat(Buffer.concat(head.chunks)));
      }
    }
  }

  private fail(error: Error): void {
    if (this.failure === undefined) {
      this.failure = error;
      this.log.error({ err: error }, 'G.722 decoder stopped');
    }
    for (const entry of this.pending.splice(0)) {
      entry.reject(error);
    }
    this.pendingInputBytes = 0;
  }
}

function s16leToFloat(pcm: Buffer): Float32Array {
  const samples = new Float32Array(pcm.length >> 1);
  for (let index = 0; index < samples.length; index++) {
    samples[index] = pcm.readInt16LE(index * 2) / 32768;
  }
  return samples;
}

/**
 * Streaming reader of WAV files: parses the RIFF (or RF64) header, then
 * reads the data chunk in blocks through a file handle and converts each
 * block to float PCM, so a file of any length costs one block of memory.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';

import { ALAW_DECODE_TABLE, MULAW_DECODE_TABLE } from '../audio/g711.ts';
import { AudioFormatError, SourceError } from '../errors.ts';

/** Sample layouts the reader converts; the number is the byte width of one sample. */
export type WavSampleEncoding =
  | 'pcm-u8'
  | 'pcm-s16'
  | 'pcm-s24'
  | 'pcm-s32'
  | 'float32'
  | 'float64'
  | 'mulaw'
  | 'alaw';

export interface WavInfo {
  path: string;
  container: 'RIFF' | 'RF64' | 'BW64';
  /** WAVE format tag, with WAVE_FORMAT_EXTENSIBLE resolved to its subformat. */
  formatTag: number;
  sampleEncoding: WavSampleEncoding;
  sampleRateHz: number;
  channels: number;
  /** Bytes of one sample frame (one sample of every channel). */
  blockAlign: number;
  /** File offset of the first sample. */
  dataOffset: number;
  /**
   * Data chunk size from the header, or undefined when the header gives none
   * (0xFFFFFFFF, written by programs that stream a WAV and cannot seek back).
   */
  declaredDataBytes: number | undefined;
  /** Whole sample frames available when the file was opened. */
  sampleFrames: number;
  durationMs: number;
  /** True when the header declares more data than the file holds; the reader stops at end of file. */
  truncated: boolean;
}

// WAVE format tags (RFC 2361, mmreg.h).
const WAVE_FORMAT_PCM = 0x0001;
const WAVE_FORMAT_IEEE_FLOAT = 0x0003;
const WAVE_FORMAT_ALAW = 0x0006;
const WAVE_FORMAT_MULAW = 0x0007;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;

/** Names of common compressed WAVE format tags, for error messages. */
const FORMAT_TAG_NAMES: Record<number, string> = {
  0x0002: 'Microsoft ADPCM',
  0x0011: 'IMA ADPCM',
  0x0022: 'TrueSpeech',
  0x0031: 'GSM 6.10',
  0x0040: 'G.721 ADPCM',
  0x0050: 'MPEG',
  0x0055: 'MPEG Layer 3',
  0x0092: 'Dolby AC-3 SPDIF',
  0x00ff: 'AAC',
  0x0161: 'Windows Media Audio',
  0x1610: 'HE-AAC',
  0x2000: 'Dolby AC-3',
  0x2001: 'DTS',
  0xf1ac: 'FLAC',
};

/** Bytes 4 to 15 of every WAVE_FORMAT_EXTENSIBLE subformat GUID that wraps a plain format tag. */
const KSDATAFORMAT_SUBTYPE_SUFFIX = Buffer.from([
  0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71,
]);

/** A chunk size of 0xFFFFFFFF means "unknown" in streamed WAVs and "see ds64" in RF64. */
const UNKNOWN_SIZE = 0xffffffff;

/** Chunks before the data chunk are read whole only up to this size; larger ones are skipped. */
const MAX_HEADER_CHUNK_BYTES = 1 << 16;

interface FmtChunk {
  formatTag: number;
  channels: number;
  sampleRateHz: number;
  blockAlign: number;
  bitsPerSample: number;
}

interface DataChunk {
  offset: number;
  declaredBytes: number | undefined;
}

/**
 * An open WAV file that yields float PCM in [-1, 1), interleaved, sample
 * frame by sample frame from the start of the data chunk.
 */
export class WavFileReader {
  readonly info: WavInfo;

  private readonly handle: FileHandle;
  private readonly dataEnd: number;
  private position: number;
  private readBuffer = Buffer.alloc(0);
  private closed = false;

  private constructor(handle: FileHandle, info: WavInfo) {
    this.handle = handle;
    this.info = info;
    this.position = info.dataOffset;
    // Without a trustworthy size, read up to end of file, which may still be growing.
    this.dataEnd =
      info.declaredDataBytes === undefined || info.truncated
        ? Number.POSITIVE_INFINITY
        : info.dataOffset + info.declaredDataBytes;
  }

  /**
   * Opens a WAV file and parses its header.
   *
   * @throws SourceError when the file cannot be opened or read.
   * @throws AudioFormatError when it is not a WAV file or its encoding is not supported.
   */
  static async open(path: string): Promise<WavFileReader> {
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (error) {
      throw new SourceError(`cannot open WAV file ${path}: ${(error as Error).message}; check the path and its permissions`, {
        cause: error,
      });
    }
    try {
      const info = await readHeader(handle, path);
      return new WavFileReader(handle, info);
    } catch (error) {
      await handle.close();
      if (error instanceof AudioFormatError) {
        throw error;
      }
      throw new SourceError(`cannot read WAV file ${path}: ${(error as Error).message}`, { cause: error });
    }
  }

  /** Sample frames read so far. */
  get positionFrames(): number {
    return (this.position - this.info.dataOffset) / this.info.blockAlign;
  }

  /**
   * Reads up to `maxFrames` sample frames into a new Float32Array, or
   * returns null at the end of the data. A partial sample frame at the end
   * of the file is left unread.
   */
  async read(maxFrames: number): Promise<Float32Array | null> {
    if (this.closed) {
      throw new SourceError(`WAV file ${this.info.path} is closed`);
    }
    const { blockAlign } = this.info;
    const wantedBytes = Math.min(maxFrames * blockAlign, this.dataEnd - this.position);
    if (wantedBytes < blockAlign) {
      return null;
    }
    if (this.readBuffer.length < wantedBytes) {
      this.readBuffer = Buffer.allocUnsafe(wantedBytes);
    }
    const bytesRead = await readFully(this.handle, this.readBuffer, wantedBytes, this.position);
    const frames = Math.floor(bytesRead / blockAlign);
    if (frames === 0) {
      return null;
    }
    this.position += frames * blockAlign;
    return convertSamples(this.readBuffer, frames * this.info.channels, this.info.sampleEncoding);
  }

  /** Closes the file handle. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) {
      return;
    }
    this.closed = true;
    await this.handle.close();
  }
}

/** Reads until `length` bytes or end of file; returns the bytes read. */
async function readFully(handle: FileHandle, buffer: Buffer, length: number, position: number): Promise<number> {
  let total = 0;
  while (total < length) {
    const { bytesRead } = await handle.read(buffer, total, length - total, position + total);
    if (bytesRead === 0) {
      break;
    }
    total += bytesRead;
  }
  return total;
}

function conversionHint(path: string): string {
  const target = join(dirname(path), `${basename(path, extname(path))}-pcm.wav`);
  return `convert it to PCM with ffmpeg -i ${path} -c:a pcm_s16le ${target}`;
}

async function readHeader(handle: FileHandle, path: string): Promise<WavInfo> {
  const fileBytes = (await handle.stat()).size;
  const riff = Buffer.alloc(12);
  const riffBytes = await readFully(handle, riff, 12, 0);
  const magic = riff.toString('latin1', 0, 4);
  if (riffBytes >= 4 && magic === 'RIFX') {
    throw new AudioFormatError(`big-endian WAV (RIFX) is not supported in ${path}; ${conversionHint(path)}`);
  }
  if (riffBytes < 4 || (magic !== 'RIFF' && magic !== 'RF64' && magic !== 'BW64')) {
    throw new AudioFormatError(
      `${path} is not a WAV file: it does not start with "RIFF"; ${conversionHint(path)}`,
    );
  }
  if (riffBytes < 12) {
    throw new AudioFormatError(`truncated WAV header in ${path}: the file ends after ${riffBytes} bytes`);
  }
  const formType = riff.toString('latin1', 8, 12);
  if (formType !== 'WAVE') {
    throw new AudioFormatError(
      `${path} is a RIFF file of type "${printable(formType)}", not WAVE; ${conversionHint(path)}`,
    );
  }
  const container = magic;

  let fmt: FmtChunk | undefined;
  let data: DataChunk | undefined;
  let rf64DataBytes: number | undefined;
  const chunkHeader = Buffer.alloc(8);
  let offset = 12;
  while (fmt === undefined || data === undefined) {
    const headerBytes = await readFully(handle, chunkHeader, 8, offset);
    if (headerBytes < 8) {
      const missing = fmt === undefined ? 'fmt' : 'data';
      throw new AudioFormatError(
        `truncated WAV header in ${path}: the file ends at byte ${offset + headerBytes} before a ${missing} chunk`,
      );
    }
    const chunkId = chunkHeader.toString('latin1', 0, 4);
    const chunkBytes = chunkHeader.readUInt32LE(4);
    const bodyOffset = offset + 8;
    if (chunkId === 'data') {
      let declaredBytes: number | undefined = chunkBytes === UNKNOWN_SIZE ? rf64DataBytes : chunkBytes;
      if (container === 'RIFF' && chunkBytes === UNKNOWN_SIZE) {
        declaredBytes = undefined;
      }
      data = { offset: bodyOffset, declaredBytes };
      if (fmt === undefined) {
        // A fmt chunk after the data chunk is legal; skip the data when its size is known.
        if (declaredBytes === undefined || bodyOffset + declaredBytes >= fileBytes) {
          throw new AudioFormatError(`invalid WAV file ${path}: no fmt chunk before the data chunk`);
        }
        offset = bodyOffset + declaredBytes + (declaredBytes % 2);
        continue;
      }
      break;
    }
    if (chunkId === 'fmt ' || chunkId === 'ds64') {
      if (chunkBytes > MAX_HEADER_CHUNK_BYTES || bodyOffset + chunkBytes > fileBytes) {
        throw new AudioFormatError(
          `truncated WAV header in ${path}: the ${chunkId.trim()} chunk of ${chunkBytes} bytes at byte ${offset} runs past the end of the file`,
        );
      }
      const body = Buffer.alloc(chunkBytes);
      await readFully(handle, body, chunkBytes, bodyOffset);
      if (chunkId === 'fmt ') {
        fmt = parseFmt(body, path);
      } else if (body.length >= 16) {
        // ds64: RIFF size, then data size, as 64-bit little-endian values.
        rf64DataBytes = body.readUInt32LE(8) + body.readUInt32LE(12) * 2 ** 32;
      }
    }
    // Chunks are padded to an even length.
    offset = bodyOffset + chunkBytes + (chunkBytes % 2);
  }

  const sampleEncoding = sampleEncodingOf(fmt, path);
  const availableBytes = Math.max(0, fileBytes - data.offset);
  const truncated = data.declaredBytes !== undefined && data.declaredBytes > availableBytes;
  const usableBytes = data.declaredBytes === undefined ? availableBytes : Math.min(data.declaredBytes, availableBytes);
  const sampleFrames = Math.floor(usableBytes / fmt.blockAlign);
  return {
    path,
    container,
    formatTag: fmt.formatTag,
    sampleEncoding,
    sampleRateHz: fmt.sampleRateHz,
    channels: fmt.channels,
    blockAlign: fmt.blockAlign,
    dataOffset: data.offset,
    declaredDataBytes: data.declaredBytes,
    sampleFrames,
    durationMs: (sampleFrames * 1000) / fmt.sampleRateHz,
    truncated,
  };
}

function parseFmt(body: Buffer, path: string): FmtChunk {
  if (body.length < 16) {
    throw new AudioFormatError(`invalid WAV file ${path}: the fmt chunk has ${body.length} bytes, at least 16 expected`);
  }
  let formatTag = body.readUInt16LE(0);
  const channels = body.readUInt16LE(2);
  const sampleRateHz = body.readUInt32LE(4);
  const blockAlign = body.readUInt16LE(12);
  const bitsPerSample = body.readUInt16LE(14);
  if (formatTag === WAVE_FORMAT_EXTENSIBLE) {
    if (body.length < 40) {
      throw new AudioFormatError(
        `invalid WAV file ${path}: WAVE_FORMAT_EXTENSIBLE fmt chunk has ${body.length} bytes, 40 expected`,
      );
    }
    const subformat = body.subarray(24, 40);
    if (!subformat.subarray(4).equals(KSDATAFORMAT_SUBTYPE_SUFFIX)) {
      throw new AudioFormatError(
        `unsupported WAV subformat GUID ${subformat.toString('hex')} in ${path}; ${conversionHint(path)}`,
      );
    }
    formatTag = subformat.readUInt32LE(0);
  }
  if (channels === 0) {
    throw new AudioFormatError(`invalid WAV file ${path}: the fmt chunk declares 0 channels`);
  }
  if (sampleRateHz === 0) {
    throw new AudioFormatError(`invalid WAV file ${path}: the fmt chunk declares a sample rate of 0 Hz`);
  }
  if (blockAlign === 0 || blockAlign % channels !== 0) {
    throw new AudioFormatError(
      `invalid WAV file ${path}: block align of ${blockAlign} bytes is not a whole number of bytes per channel for ${channels} channels`,
    );
  }
  return { formatTag, channels, sampleRateHz, blockAlign, bitsPerSample };
}

function sampleEncodingOf(fmt: FmtChunk, path: string): WavSampleEncoding {
  // The container width comes from block align: valid bits may be fewer (20 bits in 3 bytes, left-justified).
  const sampleBytes = fmt.blockAlign / fmt.channels;
  const tag = `0x${fmt.formatTag.toString(16).padStart(4, '0')}`;
  const unsupportedWidth = (kind: string): AudioFormatError =>
    new AudioFormatError(
      `unsupported WAV sample size in ${path}: ${kind} with ${sampleBytes} bytes per sample (${fmt.bitsPerSample} bits); ${conversionHint(path)}`,
    );
  switch (fmt.formatTag) {
    case WAVE_FORMAT_PCM:
      switch (sampleBytes) {
        case 1:
          return 'pcm-u8';
        case 2:
          return 'pcm-s16';
        case 3:
          return 'pcm-s24';
        case 4:
          return 'pcm-s32';
        default:
          throw unsupportedWidth('integer PCM');
      }
    case WAVE_FORMAT_IEEE_FLOAT:
      switch (sampleBytes) {
        case 4:
          return 'float32';
        case 8:
          return 'float64';
        default:
          throw unsupportedWidth('float PCM');
      }
    case WAVE_FORMAT_MULAW:
    case WAVE_FORMAT_ALAW:
      if (sampleBytes !== 1) {
        throw unsupportedWidth(fmt.formatTag === WAVE_FORMAT_MULAW ? 'mu-law' : 'A-law');
      }
      return fmt.formatTag === WAVE_FORMAT_MULAW ? 'mulaw' : 'alaw';
    default: {
      const name = FORMAT_TAG_NAMES[fmt.formatTag];
      const described = name === undefined ? tag : `${tag} (${name})`;
      throw new AudioFormatError(`unsupported WAV encoding ${described} in ${path}; ${conversionHint(path)}`);
    }
  }
}

/** Converts `sampleCount` little-endian samples at the start of `bytes` to float in [-1, 1). */
function convertSamples(bytes: Buffer, sampleCount: number, encoding: WavSampleEncoding): Float32Array {
  const samples = new Float32Array(sampleCount);
  switch (encoding) {
    case 'pcm-u8':
      for (let index = 0; index < sampleCount; index++) {
        samples[index] = (bytes[index]! - 128) / 128;
      }
      break;
    case 'pcm-s16':
      for (let index = 0; index < sampleCount; index++) {
        samples[index] = bytes.readInt16LE(2 * index) / 32768;
      }
      break;
    case 'pcm-s24':
      for (let index = 0; index < sampleCount; index++) {
        samples[index] = bytes.readIntLE(3 * index, 3) / 8388608;
      }
      break;
    case 'pcm-s32':
      for (let index = 0; index < sampleCount; index++) {
        samples[index] = bytes.readInt32LE(4 * index) / 2147483648;
      }
      break;
    case 'float32':
      for (let index = 0; index < sampleCount; index++) {
        samples[index] = finiteOrZero(bytes.readFloatLE(4 * index));
      }
      break;
    case 'float64':
      for (let index = 0; index < sampleCount; index++) {
        samples[index] = finiteOrZero(bytes.readDoubleLE(8 * index));
      }
      break;
    case 'mulaw':
      for (let index = 0; index < sampleCount; index++) {
        samples[index] = MULAW_DECODE_TABLE[bytes[index]!]! / 32768;
      }
      break;
    case 'alaw':
      for (let index = 0; index < sampleCount; index++) {
        samples[index] = ALAW_DECODE_TABLE[bytes[index]!]! / 32768;
      }
      break;
  }
  return samples;
}

/** NaN and infinity in a float file become silence, because one would poison the resampler's filter state. */
function finiteOrZero(value: number): number {
  return Number.isFinite(value) ? value : 0;
}

function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?');
}

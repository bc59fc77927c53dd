import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { AudioFormatError, SourceError } from '../../src/errors.ts';
import { WavFileReader, type WavSampleEncoding } from '../../src/sources/wav-file.ts';
import { JFK_WAV, decodeToS16le, ffmpeg, makeTempDir } from '../helpers/tools.ts';

/** Reads the whole file in blocks of `blockFrames` and returns it as 16-bit samples, round(x * 32768) clamped. */
async function readAllAsInt16(path: string, blockFrames = 1000): Promise<{ samples: Int16Array; reader: WavFileReader }> {
  const reader = await WavFileReader.open(path);
  const parts: number[] = [];
  try {
    for (let block = await reader.read(blockFrames); block !== null; block = await reader.read(blockFrames)) {
      for (const value of block) {
        parts.push(Math.max(-32768, Math.min(32767, Math.round(value * 32768))));
      }
    }
  } finally {
    await reader.close();
  }
  return { samples: Int16Array.from(parts), reader };
}

function int16Samples(bytes: Buffer): Int16Array {
  const copy = Buffer.from(bytes);
  return new Int16Array(copy.buffer, copy.byteOffset, copy.length / 2);
}

function maxDifference(a: Int16Array, b: Int16Array): number {
  let largest = 0;
  for (let index = 0; index < a.length; index++) {
    largest = Math.max(largest, Math.abs(a[index]! - b[index]!));
  }
  return largest;
}

async function rejectsWithFormatError(path: string, pattern: RegExp): Promise<void> {
  await assert.rejects(WavFileReader.open(path), (error: unknown) => {
    assert.ok(error instanceof AudioFormatError, `expected AudioFormatError, got ${String(error)}`);
    assert.match(error.message, pattern);
    assert.ok(error.message.includes(path), `message does not name the file: ${error.message}`);
    return true;
  });
}

describe('WavFileReader', () => {
  let dir = '';

  before(async () => {
    dir = await makeTempDir('wav-file-test-');
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const cases: Array<{ codec: string; encoding: WavSampleEncoding; formatTag: number; exact: boolean; extra?: string[] }> = [
    { codec: 'pcm_u8', encoding: 'pcm-u8', formatTag: 0x0001, exact: true },
    { codec: 'pcm_s16le', encoding: 'pcm-s16', formatTag: 0x0001, exact: true },
    { codec: 'pcm_s24le', encoding: 'pcm-s24', formatTag: 0x0001, exact: true },
    { codec: 'pcm_s32le', encoding: 'pcm-s32', formatTag: 0x0001, exact: true },
    { codec: 'pcm_f32le', encoding: 'float32', formatTag: 0x0003, exact: false },
    { codec: 'pcm_f64le', encoding: 'float64', formatTag: 0x0003, exact: false },
    { codec: 'pcm_mulaw', encoding: 'mulaw', formatTag: 0x0007, exact: true, extra: ['-ar', '8000'] },
    { codec: 'pcm_alaw', encoding: 'alaw', formatTag: 0x0006, exact: true, extra: ['-ar', '8000'] },
  ];

  for (const { codec, encoding, formatTag, exact, extra } of cases) {
    test(`${codec} matches ffmpeg decode`, async () => {
      const path = join(dir, `${codec}.wav`);
      await ffmpeg(['-y', '-i', JFK_WAV, ...(extra ?? []), '-c:a', codec, path]);
      const expected = int16Samples(await decodeToS16le(path));
      const { samples, reader } = await readAllAsInt16(path);

      assert.equal(reader.info.sampleEncoding, encoding);
      assert.equal(reader.info.formatTag, formatTag);
      assert.equal(reader.info.channels, 1);
      assert.equal(samples.length, expected.length);
      assert.equal(reader.info.sampleFrames, expected.length);
      if (exact) {
        assert.deepEqual(samples, expected);
      } else {
        assert.ok(maxDifference(samples, expected) <= 1, `differs by ${maxDifference(samples, expected)}`);
      }
    });
  }

  test('48 kHz stereo matches ffmpeg decode', async () => {
    const path = join(dir, 'stereo-48k.wav');
    await ffmpeg(['-y', '-i', JFK_WAV, '-ar', '48000', '-ac', '2', '-c:a', 'pcm_s16le', path]);
    const expected = int16Samples(await decodeToS16le(path));
    const { samples, reader } = await readAllAsInt16(path, 4801);
    assert.equal(reader.info.sampleRateHz, 48000);
    assert.equal(reader.info.channels, 2);
    assert.ok(Math.abs(reader.info.durationMs - 11000) < 1, `${reader.info.durationMs} ms`);
    assert.deepEqual(samples, expected);
  });

  test('four channels use WAVE_FORMAT_EXTENSIBLE', async () => {
    const path = join(dir, 'four-channels.wav');
    await ffmpeg(['-y', '-i', JFK_WAV, '-t', '1', '-ac', '4', '-c:a', 'pcm_s16le', path]);
    const header = await readFile(path);
    assert.equal(header.readUInt16LE(20), 0xfffe, 'ffmpeg wrote a plain PCM header');
    const expected = int16Samples(await decodeToS16le(path));
    const { samples, reader } = await readAllAsInt16(path);
    assert.equal(reader.info.channels, 4);
    assert.equal(reader.info.formatTag, 0x0001);
    assert.deepEqual(samples, expected);
  });

  test('RF64 file reads like RIFF', async () => {
    const path = join(dir, 'rf64.wav');
    await ffmpeg(['-y', '-i', JFK_WAV, '-c:a', 'pcm_s16le', '-rf64', 'always', path]);
    const header = await readFile(path);
    assert.equal(header.toString('latin1', 0, 4), 'RF64');
    const { samples, reader } = await readAllAsInt16(path);
    assert.equal(reader.info.container, 'RF64');
    assert.equal(reader.info.declaredDataBytes, 352000, 'data size from the ds64 chunk');
    assert.equal(reader.info.truncated, false);
    assert.deepEqual(samples, int16Samples(await decodeToS16le(JFK_WAV)));
  });

  test('streamed WAV without sizes reads to end', async () => {
    // ffmpeg writing to a pipe cannot seek back, so both size fields stay 0xFFFFFFFF.
    const path = join(dir, 'streamed.wav');
    await writeFile(path, await ffmpeg(['-i', JFK_WAV, '-f', 'wav', '-']));
    const header = await readFile(path);
    assert.equal(header.readUInt32LE(4), 0xffffffff);
    const { samples, reader } = await readAllAsInt16(path);
    assert.equal(reader.info.declaredDataBytes, undefined);
    assert.deepEqual(samples, int16Samples(await decodeToS16le(JFK_WAV)));
  });

  test('truncated data chunk reads to end', async () => {
    const whole = await readFile(JFK_WAV);
    const path = join(dir, 'truncated.wav');
    // Cut in the middle of a sample: the half sample at the end is not returned.
    await writeFile(path, whole.subarray(0, whole.length - 10001));
    const { samples, reader } = await readAllAsInt16(path);
    assert.equal(reader.info.truncated, true);
    const expected = int16Samples(await decodeToS16le(JFK_WAV));
    assert.equal(samples.length, expected.length - 5001);
    assert.deepEqual(samples, expected.subarray(0, samples.length));
  });

  test('not a RIFF file', async () => {
    const path = join(dir, 'notes.wav');
    await writeFile(path, 'these are not samples\n');
    await rejectsWithFormatError(path, /is not a WAV file: it does not start with "RIFF"; convert it to PCM with ffmpeg -i /);
  });

  test('empty file', async () => {
    const path = join(dir, 'empty.wav');
    await writeFile(path, '');
    await rejectsWithFormatError(path, /is not a WAV file/);
  });

  test('truncated header', async () => {
    const whole = await readFile(JFK_WAV);
    const path = join(dir, 'header-only.wav');
    await writeFile(path, whole.subarray(0, 30));
    await rejectsWithFormatError(path, /^truncated WAV header in .*: the fmt chunk of 16 bytes at byte 12 runs past the end of the file$/);
    await writeFile(path, whole.subarray(0, 40));
    await rejectsWithFormatError(path, /^truncated WAV header in .*: the file ends at byte \d+ before a data chunk$/);
  });

  test('unsupported codec names the fix', async () => {
    const path = join(dir, 'adpcm.wav');
    await ffmpeg(['-y', '-i', JFK_WAV, '-t', '1', '-c:a', 'adpcm_ms', path]);
    await rejectsWithFormatError(
      path,
      /^unsupported WAV encoding 0x0002 \(Microsoft ADPCM\) in .*adpcm\.wav; convert it to PCM with ffmpeg -i .*adpcm\.wav -c:a pcm_s16le .*adpcm-pcm\.wav$/,
    );

    // An MPEG Layer 3 tag, patched into a PCM header.
    const mp3Path = join(dir, 'mp3-in-wav.wav');
    const patched = Buffer.from(await readFile(JFK_WAV));
    patched.writeUInt16LE(0x0055, 20);
    await writeFile(mp3Path, patched);
    await rejectsWithFormatError(mp3Path, /^unsupported WAV encoding 0x0055 \(MPEG Layer 3\) in /);
  });

  test('missing file raises SourceError', async () => {
    const path = join(dir, 'does-not-exist.wav');
    await assert.rejects(
      WavFileReader.open(path),
      (error: unknown) => error instanceof SourceError && error.message.startsWith(`cannot open WAV file ${path}:`),
    );
  });
});

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Emulator } from '../../src/emulator/emulator.ts';
import { CloseCode, type Result } from '../../src/jobs/protocol.ts';
import { connectStream, createJob, request } from './emulator-helpers.ts';

async function readJson(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
}

describe('emulator recordings', () => {
  let emulator: Emulator;
  let recordDir: string;

  before(async () => {
    recordDir = await mkdtemp(join(tmpdir(), 'emulator-recording-'));
    emulator = await Emulator.start({ port: 0, recordDir, finalizeDelayMs: 10 });
  });

  after(async () => {
    await emulator.close();
    await rm(recordDir, { recursive: true, force: true });
  });

  test('raw file matches received bytes', async () => {
    const job = await createJob(emulator);
    const first = randomBytes(6400);
    const second = randomBytes(3202);
    const jobDir = join(recordDir, job.job_id);

    const firstStream = await connectStream(emulator, job.job_id, 'room-1');
    for (let offset = 0; offset < first.length; offset += 640) {
      await firstStream.send(first.subarray(offset, offset + 640));
    }
    firstStream.ws.close(1000);
    await firstStream.closed;
    await emulator.waitFor((event) => event.type === 'stream_closed' && event.jobId === job.job_id, 2000);
    assert.deepEqual(await readFile(join(jobDir, 'room-1.raw')), first);
    assert.deepEqual(await readJson(join(jobDir, 'room-1.json')), {
      job_id: job.job_id,
      alias: 'room-1',
      audio_format: 's16le',
      sample_rate: 16000,
      num_channels: 1,
      received_bytes: first.length,
      connections: 1,
      end_of_stream: false,
    });

    const secondStream = await connectStream(emulator, job.job_id, 'room-1');
    await secondStream.send(second);
    await secondStream.end();
    await emulator.waitFor((event) => event.type === 'end_of_stream' && event.jobId === job.job_id, 2000);
    const atEnd = await readJson(join(jobDir, 'room-1.json'));
    assert.equal(atEnd['end_of_stream'], true);
    assert.equal(atEnd['connections'], 2);
    assert.equal((await secondStream.closed).code, CloseCode.NORMAL);

    const all = Buffer.concat([first, second]);
    assert.deepEqual(await readFile(join(jobDir, 'room-1.raw')), all);
    assert.deepEqual(emulator.getRecording(job.job_id, 'room-1')?.audio, all);
    const summary = await readJson(join(jobDir, 'room-1.json'));
    assert.equal(summary['received_bytes'], all.length);
    assert.equal(summary['end_of_stream'], true);
  });

  test('each alias gets its own files', async () => {
    const job = await createJob(emulator);
    const payloads = new Map([
      ['mic.a', randomBytes(480)],
      ['mic_b-2', randomBytes(960)],
    ]);
    for (const [alias, payload] of payloads) {
      const stream = await connectStream(emulator, job.job_id, alias, { audio_format: 'mulaw', sample_rate: 8000, num_channels: 2 });
      await stream.send(payload);
      await stream.end();
      await stream.closed;
    }
    // The emulator runs in this process and may still be replacing a summary after the client saw the close.
    // Its temporary file belongs to that atomic write, so it is left out.
    const files = (await readdir(join(recordDir, job.job_id))).filter((name) => !name.endsWith('.tmp')).sort();
    assert.deepEqual(files, ['mic.a.json', 'mic.a.raw', 'mic_b-2.json', 'mic_b-2.raw']);
    for (const [alias, payload] of payloads) {
      assert.deepEqual(await readFile(join(recordDir, job.job_id, `${alias}.raw`)), payload);
      const summary = await readJson(join(recordDir, job.job_id, `${alias}.json`));
      assert.equal(summary['audio_format'], 'mulaw');
      assert.equal(summary['num_channels'], 2);
    }
  });

  test('media files are saved', async () => {
    const job = await createJob(emulator, { mode: 'file', analyses: ['transcription'] });
    const data = randomBytes(1000);
    const form = new FormData();
    form.append('file', new Blob([data]), '../call 1.ogg');
    assert.equal((await request(emulator, 'POST', `/job/${job.job_id}/sources/media-files`, { rawBody: form })).status, 200);
    const files = emulator.getMediaFiles(job.job_id) ?? [];
    assert.equal(files[0]?.path, join(recordDir, job.job_id, 'media-files', '1-.._call_1.ogg'));
    assert.deepEqual(await readFile(files[0]?.path ?? ''), data);
  });

  test('retainAudio false keeps only files', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'emulator-recording-'));
    const lean = await Emulator.start({ port: 0, recordDir: dir, retainAudio: false });
    try {
      const job = await createJob(lean);
      const payload = randomBytes(640);
      const stream = await connectStream(lean, job.job_id, 'a');
      await stream.send(payload);
      await stream.end();
      await stream.closed;
      const recording = lean.getRecording(job.job_id, 'a');
      assert.equal(recording?.audio.length, 0);
      assert.equal(recording?.receivedBytes, 640);
      assert.deepEqual(await readFile(join(dir, job.job_id, 'a.raw')), payload);
    } finally {
      await lean.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('emulator level measurements', () => {
  let emulator: Emulator;

  before(async () => {
    emulator = await Emulator.start({ port: 0 });
  });

  after(async () => {
    await emulator.close();
  });

  /** Streams one second of audio to a fresh job and returns the single result. */
  async function measure(query: Record<string, string | number>, audio: Buffer): Promise<Result> {
    const job = await createJob(emulator, { mode: 'realtime', analyses: ['transcription'] });
    const stream = await connectStream(emulator, job.job_id, 'a', query);
    await stream.send(audio);
    await stream.end();
    assert.equal((await stream.closed).code, CloseCode.NORMAL);
    const results = stream.messagesOf('result');
    assert.equal(results.length, 1, JSON.stringify(stream.messages));
    const result = results[0]?.result;
    assert.ok(result);
    assert.equal(result.duration_ms, 1000);
    return result;
  }

  // Golden values: G.711 Tables 1 and 2 give the largest decoder outputs,
  // 8031 (mu-law, 14-bit) and 4032 (A-law, 13-bit), which are 32124 and
  // 32256 on a 16-bit scale; A-law's smallest output, 1, is 8.
  test('mu-law full scale code', async () => {
    const audio = Buffer.alloc(8000);
    for (let i = 0; i < audio.length; i += 1) {
      audio[i] = i % 2 === 0 ? 0x80 : 0x00;
    }
    const result = await measure({ audio_format: 'mulaw', sample_rate: 8000, num_channels: 1 }, audio);
    const expectedDbfs = Math.round(20 * Math.log10(32124 / 32768) * 100) / 100;
    assert.equal(result.data['rms_dbfs'], expectedDbfs);
    assert.equal(result.data['peak_dbfs'], expectedDbfs);
    assert.equal(result.data['active_ms'], 1000);
  });

  test('A-law full scale code', async () => {
    const audio = Buffer.alloc(8000);
    for (let i = 0; i < audio.length; i += 1) {
      audio[i] = i % 2 === 0 ? 0xaa : 0x2a;
    }
    const result = await measure({ audio_format: 'alaw', sample_rate: 8000, num_channels: 1 }, audio);
    assert.equal(result.data['rms_dbfs'], Math.round(20 * Math.log10(32256 / 32768) * 100) / 100);
  });

  test('G.711 quietest codes', async () => {
    const muSilence = await measure({ audio_format: 'mulaw', sample_rate: 8000, num_channels: 1 }, Buffer.alloc(8000, 0xff));
    assert.equal(muSilence.data['rms_dbfs'], -120);
    assert.equal(muSilence.data['active_ms'], 0);
    assert.deepEqual(muSilence.data['active_segments'], []);
    const aSmallest = await measure({ audio_format: 'alaw', sample_rate: 8000, num_channels: 1 }, Buffer.alloc(8000, 0xd5));
    assert.equal(aSmallest.data['rms_dbfs'], Math.round(20 * Math.log10(8 / 32768) * 100) / 100);
  });

  test('s16be and f32le levels', async () => {
    const big = Buffer.alloc(32000);
    for (let i = 0; i < big.length; i += 2) {
      big.writeInt16BE(16384, i);
    }
    const s16be = await measure({ audio_format: 's16be', sample_rate: 16000, num_channels: 1 }, big);
    assert.equal(s16be.data['rms_dbfs'], -6.02);

    const float = Buffer.alloc(64000);
    for (let i = 0; i < float.length; i += 4) {
      float.writeFloatLE(0.25, i);
    }
    const f32le = await measure({ audio_format: 'f32le', sample_rate: 16000, num_channels: 1 }, float);
    assert.equal(f32le.data['rms_dbfs'], -12.04);
  });

  test('stereo level covers both channels', async () => {
    // A sine of amplitude 0.5 on the left, silence on the right: mean square 0.125 / 2.
    const audio = Buffer.alloc(48000 * 4);
    for (let frame = 0; frame < 48000; frame += 1) {
      audio.writeInt16LE(Math.round(16384 * Math.sin((2 * Math.PI * 1000 * frame) / 48000)), frame * 4);
    }
    const result = await measure({ audio_format: 's16le', sample_rate: 48000, num_channels: 2 }, audio);
    assert.ok(Math.abs((result.data['rms_dbfs'] as number) + 12.04) <= 0.01, String(result.data['rms_dbfs']));
  });

  test('activity segments follow the tone', async () => {
    const audio = Buffer.alloc(32000);
    for (let i = 4800; i < 11200; i += 1) {
      audio.writeInt16LE(Math.round(16384 * Math.sin((2 * Math.PI * 400 * i) / 16000)), i * 2);
    }
    const result = await measure({ audio_format: 's16le', sample_rate: 16000, num_channels: 1 }, audio);
    assert.equal(result.data['active_ms'], 400);
    assert.deepEqual(result.data['active_segments'], [{ start_ms: 300, end_ms: 700 }]);
  });
});

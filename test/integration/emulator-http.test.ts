import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import wavefile from 'wavefile';
import { Emulator } from '../../src/emulator/emulator.ts';
import { MEDIA_TYPE, type Job, type Page, type Result } from '../../src/jobs/protocol.ts';
import { REALTIME_JOB, basicAuth, createJob, request } from './emulator-helpers.ts';

function wavOfSine(options: { sampleRateHz: number; durationMs: number; frequencyHz: number; amplitude: number }): Buffer {
  const frames = Math.round((options.sampleRateHz * options.durationMs) / 1000);
  const samples = new Int16Array(frames);
  for (let i = 0; i < frames; i += 1) {
    samples[i] = Math.round(options.amplitude * 32767 * Math.sin((2 * Math.PI * options.frequencyHz * i) / options.sampleRateHz));
  }
  const wav = new wavefile.WaveFile();
  wav.fromScratch(1, options.sampleRateHz, '16', samples);
  return Buffer.from(wav.toBuffer());
}

/** Follows links.next from `path` and returns every page. */
async function collectPages<T>(emulator: Emulator, path: string): Promise<Array<Page<T>>> {
  const pages: Array<Page<T>> = [];
  let next: string | null | undefined = path;
  while (next !== null && next !== undefined) {
    const response = await request(emulator, 'GET', next);
    assert.equal(response.status, 200, JSON.stringify(response.body));
    const page = response.body as Page<T>;
    pages.push(page);
    next = page.links.next;
    assert.ok(pages.length < 50, 'pagination does not end');
  }
  return pages;
}

describe('emulator HTTP API', () => {
  let emulator: Emulator;

  before(async () => {
    emulator = await Emulator.start({ port: 0, finalizeDelayMs: 20 });
  });

  after(async () => {
    await emulator.close();
  });

  test('missing or wrong credentials get 401', async () => {
    const cases: Array<{ name: string; auth: string | null; code: string }> = [
      { name: 'no header', auth: null, code: 'missing_credentials' },
      { name: 'wrong key', auth: basicAuth(emulator.accountId, 'wrong'), code: 'invalid_credentials' },
      { name: 'wrong account', auth: basicAuth('someone-else', emulator.apiKey), code: 'invalid_credentials' },
      { name: 'bearer scheme', auth: `Bearer ${emulator.apiKey}`, code: 'invalid_credentials' },
      { name: 'no colon', auth: `Basic ${Buffer.from(emulator.apiKey).toString('base64')}`, code: 'invalid_credentials' },
    ];
    for (const each of cases) {
      const response = await request(emulator, 'GET', '/jobs', { auth: each.auth });
      assert.equal(response.status, 401, each.name);
      assert.equal(response.body.error.code, each.code, each.name);
      assert.equal(typeof response.body.error.message, 'string', each.name);
      assert.match(response.headers.get('www-authenticate') ?? '', /^Basic /, each.name);
      assert.equal(response.headers.get('content-type'), MEDIA_TYPE, each.name);
    }
  });

  test('creates realtime job with 201', async () => {
    const response = await request(emulator, 'POST', '/jobs', {
      body: {
        ...REALTIME_JOB,
        streams: [{ alias: 'room-1', audio_format: 's16le', sample_rate: 16000, num_channels: 1 }],
        finalization_trigger: [{ type: 'manual' }],
        results_deliveries: [{ type: 'webhook', url: 'http://127.0.0.1:9/hook' }],
        metadata: { host: 'voice-7' },
        unknown_extra_field: { kept: 'out of the answer' },
      },
    });
    assert.equal(response.status, 201);
    assert.equal(response.headers.get('content-type'), MEDIA_TYPE);
    const job = response.body as Job;
    assert.match(job.job_id, /^job_[0-9A-HJKMNP-TV-Z]{26}$/);
    assert.equal(response.headers.get('location'), `/job/${job.job_id}`);
    assert.equal(job.mode, 'realtime');
    assert.equal(job.status, 'active');
    assert.deepEqual(job.analyses, ['transcription', 'toxicity']);
    assert.ok(!Number.isNaN(Date.parse(job.created_at)));
    assert.equal(job.finalized_at, null);
    assert.deepEqual(job.streams, []);
    assert.deepEqual(emulator.getJob(job.job_id), job);
    const fetched = await request(emulator, 'GET', `/job/${job.job_id}`);
    assert.equal(fetched.status, 200);
    assert.deepEqual(fetched.body, job);
  });

  test('accepts application/json bodies', async () => {
    const response = await request(emulator, 'POST', '/jobs', {
      rawBody: JSON.stringify({ mode: 'file', analyses: ['transcription'] }),
      headers: { 'content-type': 'application/json; charset=utf-8' },
    });
    assert.equal(response.status, 201);
    assert.equal(response.body.mode, 'file');
  });

  test('invalid JSON gets 400', async () => {
    const response = await request(emulator, 'POST', '/jobs', {
      rawBody: '{"mode": "realtime",',
      headers: { 'content-type': MEDIA_TYPE },
    });
    assert.equal(response.status, 400);
    assert.equal(response.body.error.code, 'invalid_json');
  });

  test('non-JSON content type gets 400', async () => {
    const response = await request(emulator, 'POST', '/jobs', {
      rawBody: JSON.stringify(REALTIME_JOB),
      headers: { 'content-type': 'text/plain' },
    });
    assert.equal(response.status, 400);
    assert.equal(response.body.error.code, 'unsupported_content_type');
  });

  test('invalid job values get 422', async () => {
    const stream = { alias: 'a', audio_format: 's16le', sample_rate: 16000, num_channels: 1 };
    const cases: Array<{ body: unknown; field: string }> = [
      { body: [], field: 'request body' },
      { body: null, field: 'request body' },
      { body: { analyses: ['x'] }, field: 'mode' },
      { body: { mode: 'batch', analyses: ['x'] }, field: 'mode' },
      { body: { mode: 'realtime' }, field: 'analyses' },
      { body: { mode: 'realtime', analyses: [] }, field: 'analyses' },
      { body: { mode: 'realtime', analyses: 'transcription' }, field: 'analyses' },
      { body: { mode: 'realtime', analyses: ['ok', 7] }, field: 'analyses[1]' },
      { body: { ...REALTIME_JOB, streams: {} }, field: 'streams' },
      { body: { ...REALTIME_JOB, streams: ['a'] }, field: 'streams[0]' },
      { body: { ...REALTIME_JOB, streams: [{ ...stream, alias: 'room 1' }] }, field: 'streams[0].alias' },
      { body: { ...REALTIME_JOB, streams: [{ ...stream, alias: 'x'.repeat(65) }] }, field: 'streams[0].alias' },
      { body: { ...REALTIME_JOB, streams: [{ ...stream, audio_format: 'mp3' }] }, field: 'streams[0].audio_format' },
      { body: { ...REALTIME_JOB, streams: [{ ...stream, sample_rate: 12345 }] }, field: 'streams[0].sample_rate' },
      { body: { ...REALTIME_JOB, streams: [{ ...stream, sample_rate: '16000' }] }, field: 'streams[0].sample_rate' },
      { body: { ...REALTIME_JOB, streams: [{ alias: 'a', audio_format: 's16le', num_channels: 1 }] }, field: 'streams[0].sample_rate' },
      { body: { ...REALTIME_JOB, streams: [{ ...stream, num_channels: 9 }] }, field: 'streams[0].num_channels' },
      { body: { ...REALTIME_JOB, streams: [{ ...stream, num_channels: 0 }] }, field: 'streams[0].num_channels' },
      { body: { ...REALTIME_JOB, streams: [{ ...stream, num_channels: 1.5 }] }, field: 'streams[0].num_channels' },
      { body: { ...REALTIME_JOB, streams: [stream, stream] }, field: 'streams[1].alias' },
      { body: { mode: 'file', analyses: ['x'], streams: [stream] }, field: 'streams' },
      { body: { ...REALTIME_JOB, finalization_trigger: [] }, field: 'finalization_trigger' },
      { body: { ...REALTIME_JOB, finalization_trigger: { type: 'manual' } }, field: 'finalization_trigger' },
      { body: { ...REALTIME_JOB, finalization_trigger: [{ type: 'sometimes' }] }, field: 'finalization_trigger[0].type' },
      { body: { ...REALTIME_JOB, finalization_trigger: [{ type: 'idle' }] }, field: 'finalization_trigger[0].idle_seconds' },
      { body: { ...REALTIME_JOB, finalization_trigger: [{ type: 'idle', idle_seconds: 0 }] }, field: 'idle_seconds' },
      { body: { ...REALTIME_JOB, finalization_trigger: [{ type: 'idle', idle_seconds: '5' }] }, field: 'idle_seconds' },
      { body: { ...REALTIME_JOB, results_deliveries: {} }, field: 'results_deliveries' },
      { body: { ...REALTIME_JOB, results_deliveries: [{ type: 'email', url: 'http://x' }] }, field: 'results_deliveries[0]' },
      { body: { ...REALTIME_JOB, results_deliveries: [{ type: 'webhook', url: 'ftp://x/y' }] }, field: 'results_deliveries[0].url' },
      { body: { ...REALTIME_JOB, results_deliveries: [{ type: 'webhook', url: 'not a url' }] }, field: 'results_deliveries[0].url' },
      { body: { ...REALTIME_JOB, results_deliveries: [{ type: 'webhook' }] }, field: 'results_deliveries[0].url' },
      { body: { ...REALTIME_JOB, metadata: ['a'] }, field: 'metadata' },
    ];
    const jobCount = emulator.listJobIds().length;
    for (const each of cases) {
      const response = await request(emulator, 'POST', '/jobs', { body: each.body });
      const label = JSON.stringify(each.body);
      assert.equal(response.status, 422, label);
      assert.equal(response.body.error.code, 'invalid_value', label);
      assert.ok(response.body.error.message.includes(each.field), `${label}: ${response.body.error.message}`);
    }
    assert.equal(emulator.listJobIds().length, jobCount, 'a rejected request created a job');
  });

  test('unknown job gets 404 everywhere', async () => {
    const paths: Array<[string, string, Record<string, unknown> | undefined]> = [
      ['GET', '/job/job_missing', undefined],
      ['PATCH', '/job/job_missing', { status: 'finalizing' }],
      ['GET', '/job/job_missing/results', undefined],
      ['GET', '/job/job_missing/sources/streams/a', undefined],
    ];
    for (const [method, path, body] of paths) {
      const response = await request(emulator, method, path, body === undefined ? {} : { body });
      assert.equal(response.status, 404, `${method} ${path}`);
      assert.equal(response.body.error.code, 'job_not_found', `${method} ${path}`);
    }
    const form = new FormData();
    form.append('file', new Blob([Buffer.from('x')]), 'a.bin');
    const upload = await request(emulator, 'POST', '/job/job_missing/sources/media-files', { rawBody: form });
    assert.equal(upload.status, 404);
  });

  test('unknown path and wrong method', async () => {
    const unknown = await request(emulator, 'GET', '/job');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error.code, 'not_found');
    const trailing = await request(emulator, 'GET', '/jobs/');
    assert.equal(trailing.status, 404);
    const deleted = await request(emulator, 'DELETE', '/jobs');
    assert.equal(deleted.status, 405);
    assert.equal(deleted.headers.get('allow'), 'GET, POST');
    const job = await createJob(emulator);
    const put = await request(emulator, 'PUT', `/job/${job.job_id}`, { body: { status: 'finalizing' } });
    assert.equal(put.status, 405);
    assert.equal(put.headers.get('allow'), 'GET, PATCH');
  });

  test('malformed request targets rejected', async () => {
    const { port } = new URL(emulator.baseUrl);
    const rawRequests = [
      'GET // HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      'GET //a%20b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
      'GET // HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
        'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    ];
    for (const raw of rawRequests) {
      const response = await new Promise<string>((resolve, reject) => {
        const socket = connect(Number(port), '127.0.0.1', () => socket.end(raw));
        const chunks: Buffer[] = [];
        socket.on('data', (data) => chunks.push(data));
        socket.on('close', () => resolve(Buffer.concat(chunks).toString()));
        socket.on('error', reject);
      });
      assert.match(response, /^HTTP\/1\.1 (400|404) /, JSON.stringify(raw));
    }
    assert.equal((await request(emulator, 'GET', '/jobs')).status, 200, 'the emulator stopped serving');
  });

  test('plain GET on stream path gets 426', async () => {
    const job = await createJob(emulator);
    const response = await request(emulator, 'GET', `/job/${job.job_id}/sources/streams/room-1`);
    assert.equal(response.status, 426);
    assert.equal(response.body.error.code, 'upgrade_required');
  });

  test('PATCH finalizes and is idempotent', async () => {
    const job = await createJob(emulator);
    const first = await request(emulator, 'PATCH', `/job/${job.job_id}`, { body: { status: 'finalizing' } });
    assert.equal(first.status, 200);
    assert.equal(first.body.job_id, job.job_id);
    assert.ok(['finalizing', 'finalized'].includes(first.body.status));
    await emulator.waitFor((event) => event.type === 'job_finalized' && event.jobId === job.job_id, 5000);
    const finalized = await request(emulator, 'GET', `/job/${job.job_id}`);
    assert.equal(finalized.body.status, 'finalized');
    assert.ok(!Number.isNaN(Date.parse(finalized.body.finalized_at)));
    const again = await request(emulator, 'PATCH', `/job/${job.job_id}`, { body: { status: 'finalizing' } });
    assert.equal(again.status, 200);
    assert.equal(again.body.status, 'finalized');
    assert.equal(again.body.finalized_at, finalized.body.finalized_at);
    const requested = emulator.events.filter((event) => event.type === 'finalize_requested' && event.jobId === job.job_id);
    assert.equal(requested.length, 1);
    assert.equal(requested[0]?.detail, 'manual');
  });

  test('PATCH with invalid body is rejected', async () => {
    const job = await createJob(emulator);
    const cases: Array<{ body: unknown; status: number }> = [
      { body: { status: 'active' }, status: 422 },
      { body: { status: 'finalized' }, status: 422 },
      { body: {}, status: 422 },
      { body: { status: 'finalizing', analyses: ['x'] }, status: 422 },
      { body: 'finalizing', status: 422 },
    ];
    for (const each of cases) {
      const response = await request(emulator, 'PATCH', `/job/${job.job_id}`, { body: each.body });
      assert.equal(response.status, each.status, JSON.stringify(each.body));
    }
    const broken = await request(emulator, 'PATCH', `/job/${job.job_id}`, {
      rawBody: '{status',
      headers: { 'content-type': MEDIA_TYPE },
    });
    assert.equal(broken.status, 400);
    assert.equal(emulator.getJob(job.job_id)?.status, 'active');
  });

  test('media files give measured results', async () => {
    const job = await createJob(emulator, { mode: 'file', analyses: ['transcription', 'emotion'] });
    const wav = wavOfSine({ sampleRateHz: 8000, durationMs: 1500, frequencyHz: 1000, amplitude: 0.5 });
    const other = Buffer.from('OggS not really an ogg file');
    const form = new FormData();
    form.append('file', new Blob([wav], { type: 'audio/wav' }), 'tone.wav');
    form.append('file', new Blob([other], { type: 'audio/ogg' }), 'call.ogg');
    const response = await request(emulator, 'POST', `/job/${job.job_id}/sources/media-files`, { rawBody: form });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.equal(response.body.job_id, job.job_id);

    const files = emulator.getMediaFiles(job.job_id) ?? [];
    assert.equal(files.length, 2);
    assert.equal(files[0]?.filename, 'tone.wav');
    assert.equal(files[0]?.durationMs, 1500);
    assert.deepEqual(files[0]?.data, wav);
    assert.equal(files[1]?.filename, 'call.ogg');
    assert.equal(files[1]?.durationMs, null);
    assert.deepEqual(files[1]?.data, other);

    const results = emulator.getResults(job.job_id) ?? [];
    const measured = results.filter((result) => result.alias === 'file-1');
    // 1.5 s in 1 s intervals: two intervals, times two analyses.
    assert.equal(measured.length, 4);
    assert.deepEqual(
      measured.map((result) => [result.analysis, result.start_ms, result.duration_ms]),
      [
        ['transcription', 0, 1000],
        ['emotion', 0, 1000],
        ['transcription', 1000, 500],
        ['emotion', 1000, 500],
      ],
    );
    for (const result of measured) {
      assert.equal(result.data['emulated'], true);
      assert.equal(result.data['level_known'], true);
      // A sine of amplitude 0.5 has an RMS of 0.5 / sqrt(2): -9.03 dBFS.
      assert.ok(Math.abs((result.data['rms_dbfs'] as number) + 9.03) < 0.02, String(result.data['rms_dbfs']));
      assert.ok(Math.abs((result.data['peak_dbfs'] as number) + 6.02) < 0.02, String(result.data['peak_dbfs']));
    }
    const counted = results.filter((result) => result.alias === 'file-2');
    assert.equal(counted.length, 2);
    assert.equal(counted[0]?.data['level_known'], false);
    assert.equal(counted[0]?.data['received_bytes'], other.length);
    assert.equal(counted[0]?.data['filename'], 'call.ogg');
  });

  test('media file uploads are checked', async () => {
    const fileJob = await createJob(emulator, { mode: 'file', analyses: ['transcription'] });
    const realtimeJob = await createJob(emulator);
    const path = `/job/${fileJob.job_id}/sources/media-files`;
    const fileForm = (): FormData => {
      const form = new FormData();
      form.append('file', new Blob([Buffer.from('abc')]), 'a.bin');
      return form;
    };

    const onRealtime = await request(emulator, 'POST', `/job/${realtimeJob.job_id}/sources/media-files`, { rawBody: fileForm() });
    assert.equal(onRealtime.status, 409);

    const notMultipart = await request(emulator, 'POST', path, { body: { file: 'abc' } });
    assert.equal(notMultipart.status, 400);
    assert.equal(notMultipart.body.error.code, 'unsupported_content_type');

    const wrongName = new FormData();
    wrongName.append('upload', new Blob([Buffer.from('abc')]), 'a.bin');
    const wrongNameResponse = await request(emulator, 'POST', path, { rawBody: wrongName });
    assert.equal(wrongNameResponse.status, 422);
    assert.match(wrongNameResponse.body.error.message, /"upload"/);

    const textPart = new FormData();
    textPart.append('file', 'just text');
    assert.equal((await request(emulator, 'POST', path, { rawBody: textPart })).status, 422);

    assert.equal((await request(emulator, 'POST', path, { rawBody: new FormData() })).status, 422);

    const broken = Buffer.concat([Buffer.from('RIFF'), Buffer.alloc(4), Buffer.from('WAVE'), Buffer.from('garbage')]);
    const brokenForm = new FormData();
    brokenForm.append('file', new Blob([Buffer.from('fine')]), 'first.bin');
    brokenForm.append('file', new Blob([broken]), 'broken.wav');
    const brokenResponse = await request(emulator, 'POST', path, { rawBody: brokenForm });
    assert.equal(brokenResponse.status, 422);
    assert.equal(brokenResponse.body.error.code, 'invalid_media_file');
    assert.equal(emulator.getMediaFiles(fileJob.job_id)?.length, 0, 'a rejected upload kept a file');

    const malformed = await request(emulator, 'POST', path, {
      rawBody: '--other\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc\r\n--other--\r\n',
      headers: { 'content-type': 'multipart/form-data; boundary=expected' },
    });
    assert.equal(malformed.status, 400);
    assert.equal(malformed.body.error.code, 'invalid_multipart');

    const accepted = await request(emulator, 'POST', path, { rawBody: fileForm() });
    assert.equal(accepted.status, 200);
    await request(emulator, 'PATCH', `/job/${fileJob.job_id}`, { body: { status: 'finalizing' } });
    const late = await request(emulator, 'POST', path, { rawBody: fileForm() });
    assert.equal(late.status, 409);
    assert.equal(late.body.error.code, 'job_not_active');
  });
});

describe('emulator pagination', () => {
  let emulator: Emulator;

  before(async () => {
    emulator = await Emulator.start({ port: 0 });
  });

  after(async () => {
    await emulator.close();
  });

  test('jobs pages follow links.next', async () => {
    for (let i = 0; i < 45; i += 1) {
      await createJob(emulator);
    }
    const pages = await collectPages<Job>(emulator, '/jobs?per_page=20');
    assert.deepEqual(
      pages.map((page) => page.data.length),
      [20, 20, 5],
    );
    for (const page of pages) {
      assert.equal(page.meta.total_count, 45);
      assert.equal(page.meta.per_page, 20);
      assert.match(page.links.self, /^http:\/\/127\.0\.0\.1:\d+\/jobs\?/);
    }
    assert.equal(pages[2]?.links.next ?? null, null);
    assert.equal(pages[0]?.links.prev ?? null, null);
    assert.deepEqual(
      pages.flatMap((page) => page.data.map((job) => job.job_id)),
      emulator.listJobIds(),
    );

    const previous = await request(emulator, 'GET', pages[2]?.links.prev ?? '');
    assert.deepEqual(previous.body.data, pages[1]?.data);

    const defaults = await request(emulator, 'GET', '/jobs');
    assert.equal(defaults.body.meta.per_page, 20);
    assert.equal(defaults.body.data.length, 20);

    const single = await collectPages<Job>(emulator, '/jobs?per_page=100');
    assert.equal(single.length, 1);
    assert.equal(single[0]?.data.length, 45);
  });

  test('last page self link shows new jobs', async () => {
    const pages = await collectPages<Job>(emulator, '/jobs?per_page=20');
    const last = pages.at(-1);
    assert.ok(last);
    assert.equal(last.links.next ?? null, null);
    const added = await createJob(emulator);
    const again = await request(emulator, 'GET', last.links.self);
    assert.equal(again.status, 200);
    assert.deepEqual(
      again.body.data.map((job: Job) => job.job_id),
      [...last.data.map((job) => job.job_id), added.job_id],
    );
  });

  test('invalid page parameters get 422', async () => {
    for (const query of ['per_page=0', 'per_page=101', 'per_page=-1', 'per_page=1.5', 'per_page=abc', 'per_page=', 'cursor=bogus', 'page=2']) {
      const response = await request(emulator, 'GET', `/jobs?${query}`);
      assert.equal(response.status, 422, query);
      assert.equal(response.body.error.code, 'invalid_value', query);
    }
    const job = await createJob(emulator);
    const results = await request(emulator, 'GET', `/job/${job.job_id}/results?per_page=101`);
    assert.equal(results.status, 422);
  });

  test('results pages follow links.next', async () => {
    const job = await createJob(emulator, { mode: 'file', analyses: ['a', 'b'] });
    const form = new FormData();
    form.append('file', new Blob([wavOfSine({ sampleRateHz: 16000, durationMs: 5000, frequencyHz: 440, amplitude: 0.1 })]), 'five.wav');
    const upload = await request(emulator, 'POST', `/job/${job.job_id}/sources/media-files`, { rawBody: form });
    assert.equal(upload.status, 200);
    const pages = await collectPages<Result>(emulator, `/job/${job.job_id}/results?per_page=3`);
    assert.deepEqual(
      pages.map((page) => page.data.length),
      [3, 3, 3, 1],
    );
    const results = pages.flatMap((page) => page.data);
    assert.deepEqual(results, emulator.getResults(job.job_id));
    assert.deepEqual(
      results.map((result) => `${result.analysis}@${result.start_ms}`),
      ['a@0', 'b@0', 'a@1000', 'b@1000', 'a@2000', 'b@2000', 'a@3000', 'b@3000', 'a@4000', 'b@4000'],
    );
    for (const page of pages) {
      assert.equal(page.meta.total_count, 10);
    }
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Emulator } from '../../src/emulator/emulator.ts';
import { CloseCode, MEDIA_TYPE } from '../../src/jobs/protocol.ts';
import {
  S16LE_16K_MONO,
  basicAuth,
  chunk,
  connectStream,
  createJob,
  expectUpgradeRejected,
  request,
  sineS16le,
  type TestStream,
} from './emulator-helpers.ts';

/** 20 ms frames of a 2.5 s, 440 Hz sine at 16 kHz mono. */
const TONE = sineS16le({ frequencyHz: 440, sampleRateHz: 16000, durationMs: 2500, amplitude: 0.25 });
const FRAME_BYTES = 640;

async function sendAll(stream: TestStream, data: Buffer, frameBytes = FRAME_BYTES): Promise<void> {
  for (const frame of chunk(data, frameBytes)) {
    await stream.send(frame);
  }
}

async function expectErrorClose(stream: TestStream, code: number, messagePattern?: RegExp): Promise<string> {
  const closed = await stream.closed;
  assert.equal(closed.code, code, `close reason: ${closed.reason}`);
  const errors = stream.messagesOf('error');
  assert.equal(errors.length, 1, `expected one error message, got ${JSON.stringify(stream.messages)}`);
  const text = errors[0]?.error ?? '';
  if (messagePattern !== undefined) {
    assert.match(text, messagePattern);
  }
  return text;
}

describe('emulator stream upgrades', () => {
  let emulator: Emulator;

  before(async () => {
    emulator = await Emulator.start({ port: 0, finalizeDelayMs: 20 });
  });

  after(async () => {
    await emulator.close();
  });

  test('bad credentials get 401', async () => {
    const job = await createJob(emulator);
    const none = await expectUpgradeRejected(connectStream(emulator, job.job_id, 'a', S16LE_16K_MONO, { auth: 'none' }));
    assert.equal(none.status, 401);
    assert.equal(none.body.error.code, 'missing_credentials');
    assert.equal(none.headers['content-type'], MEDIA_TYPE);

    const wrong = await expectUpgradeRejected(
      connectStream(emulator, job.job_id, 'a', S16LE_16K_MONO, { authorization: basicAuth(emulator.accountId, 'nope') }),
    );
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.error.code, 'invalid_credentials');

    const wrongQueryKey = await expectUpgradeRejected(
      connectStream(emulator, job.job_id, 'a', { ...S16LE_16K_MONO, api_key: 'nope' }, { auth: 'none' }),
    );
    assert.equal(wrongQueryKey.status, 401);
    assert.equal(emulator.getJob(job.job_id)?.streams.length, 0);
  });

  test('api_key query parameter is accepted', async () => {
    const job = await createJob(emulator);
    const stream = await connectStream(emulator, job.job_id, 'a', S16LE_16K_MONO, { auth: 'query' });
    await stream.send(Buffer.alloc(640));
    await stream.end();
    const closed = await stream.closed;
    assert.equal(closed.code, CloseCode.NORMAL);
    assert.equal(emulator.getRecording(job.job_id, 'a')?.receivedBytes, 640);
  });

  test('invalid alias gets 400', async () => {
    const job = await createJob(emulator);
    for (const alias of ['bad%20alias', 'x'.repeat(65), 'caf%C3%A9']) {
      const rejected = await expectUpgradeRejected(connectStream(emulator, job.job_id, alias));
      assert.equal(rejected.status, 400, alias);
      assert.equal(rejected.body.error.code, 'invalid_alias', alias);
    }
  });

  test('unknown job gets 404', async () => {
    const rejected = await expectUpgradeRejected(connectStream(emulator, 'job_unknown', 'a'));
    assert.equal(rejected.status, 404);
    assert.equal(rejected.body.error.code, 'job_not_found');
    const event = await emulator.waitFor((each) => each.type === 'upgrade_rejected' && each.jobId === 'job_unknown', 1000);
    assert.equal(event.status, 404);
  });

  test('second connection on alias gets 409', async () => {
    const job = await createJob(emulator);
    const first = await connectStream(emulator, job.job_id, 'room-1');
    const second = await expectUpgradeRejected(connectStream(emulator, job.job_id, 'room-1'));
    assert.equal(second.status, 409);
    assert.equal(second.body.error.code, 'alias_connected');
    const other = await connectStream(emulator, job.job_id, 'room-2');
    assert.equal(emulator.getJob(job.job_id)?.streams.length, 2);
    first.ws.close();
    other.ws.close();
    await Promise.all([first.closed, other.closed]);
  });

  test('reopening ended alias gets 409', async () => {
    const job = await createJob(emulator);
    const stream = await connectStream(emulator, job.job_id, 'room-1');
    await stream.send(Buffer.alloc(320));
    await stream.end();
    assert.equal((await stream.closed).code, CloseCode.NORMAL);
    const reopened = await expectUpgradeRejected(connectStream(emulator, job.job_id, 'room-1'));
    assert.equal(reopened.status, 409);
    assert.equal(reopened.body.error.code, 'alias_ended');
  });

  test('invalid query closes with 1003', async () => {
    const job = await createJob(emulator);
    const cases: Array<{ query: Record<string, string | number>; pattern: RegExp }> = [
      { query: {}, pattern: /audio_format/ },
      { query: { audio_format: 'mp3' }, pattern: /audio_format/ },
      { query: { audio_format: 's16le', num_channels: 1 }, pattern: /sample_rate/ },
      { query: { audio_format: 's16le', sample_rate: 12345, num_channels: 1 }, pattern: /sample_rate/ },
      { query: { audio_format: 's16le', sample_rate: '16000.0', num_channels: 1 }, pattern: /sample_rate/ },
      { query: { audio_format: 'mulaw', sample_rate: 8000 }, pattern: /num_channels/ },
      { query: { audio_format: 'mulaw', sample_rate: 8000, num_channels: 9 }, pattern: /num_channels/ },
      { query: { audio_format: 'mulaw', sample_rate: 8000, num_channels: 0 }, pattern: /num_channels/ },
      { query: { audio_format: 'mulaw', sample_rate: 8000, num_channels: 'two' }, pattern: /num_channels/ },
      { query: { ...S16LE_16K_MONO, sampleRate: 16000 }, pattern: /unknown query parameter "sampleRate"/ },
      { query: { audio_format: 'ogg', sample_rate: 1 }, pattern: /sample_rate/ },
    ];
    for (const [index, each] of cases.entries()) {
      const stream = await connectStream(emulator, job.job_id, `q${index}`, each.query);
      await expectErrorClose(stream, CloseCode.INVALID_QUERY, each.pattern);
    }
    const repeated = await connectStream(
      emulator,
      job.job_id,
      'repeated',
      new URLSearchParams('audio_format=s16le&audio_format=mulaw&sample_rate=16000&num_channels=1'),
    );
    await expectErrorClose(repeated, CloseCode.INVALID_QUERY, /more than once/);
    assert.deepEqual(emulator.getJob(job.job_id)?.streams, [], 'a rejected connection created an alias');
  });

  test('declared format mismatch closes with 1003', async () => {
    const job = await createJob(emulator, {
      mode: 'realtime',
      analyses: ['transcription'],
      streams: [{ alias: 'phone', audio_format: 'mulaw', sample_rate: 8000, num_channels: 1 }],
    });
    const wrong = await connectStream(emulator, job.job_id, 'phone', S16LE_16K_MONO);
    await expectErrorClose(wrong, CloseCode.INVALID_QUERY, /declared with audio_format=mulaw/);
    const right = await connectStream(emulator, job.job_id, 'phone', { audio_format: 'mulaw', sample_rate: 8000, num_channels: 1 });
    await right.end();
    assert.equal((await right.closed).code, CloseCode.NORMAL);
  });

  test('stream on file job closes with 4004', async () => {
    const job = await createJob(emulator, { mode: 'file', analyses: ['transcription'] });
    const stream = await connectStream(emulator, job.job_id, 'a');
    await expectErrorClose(stream, CloseCode.JOB_NOT_ACTIVE, /file job/);
  });
});

describe('emulator stream frames', () => {
  let emulator: Emulator;

  before(async () => {
    emulator = await Emulator.start({ port: 0, finalizeDelayMs: 20 });
  });

  after(async () => {
    await emulator.close();
  });

  test('odd-length s16le frame closes with 4002', async () => {
    const job = await createJob(emulator);
    const stream = await connectStream(emulator, job.job_id, 'a');
    await stream.send(Buffer.alloc(640, 1));
    await stream.send(Buffer.alloc(641, 1));
    await expectErrorClose(stream, CloseCode.FORMAT_MISMATCH, /641 bytes/);
    const recording = emulator.getRecording(job.job_id, 'a');
    assert.equal(recording?.audio.length, 640, 'the valid frame before the bad one was lost');
    assert.equal(recording?.endOfStream, false);
  });

  test('partial stereo sample closes with 4002', async () => {
    const job = await createJob(emulator);
    const stream = await connectStream(emulator, job.job_id, 'a', { audio_format: 's16le', sample_rate: 48000, num_channels: 2 });
    await stream.send(Buffer.alloc(6));
    await expectErrorClose(stream, CloseCode.FORMAT_MISMATCH, /multiple of 4 bytes/);
  });

  test('partial f32le sample closes with 4002', async () => {
    const job = await createJob(emulator);
    const stream = await connectStream(emulator, job.job_id, 'a', { audio_format: 'f32le', sample_rate: 16000, num_channels: 1 });
    await stream.send(Buffer.alloc(6));
    await expectErrorClose(stream, CloseCode.FORMAT_MISMATCH, /multiple of 4 bytes/);
  });

  test('NaN f32le sample closes with 4002', async () => {
    const job = await createJob(emulator);
    const stream = await connectStream(emulator, job.job_id, 'a', { audio_format: 'f32le', sample_rate: 16000, num_channels: 1 });
    const frame = Buffer.alloc(16);
    frame.writeFloatLE(Number.NaN, 8);
    await stream.send(frame);
    await expectErrorClose(stream, CloseCode.FORMAT_MISMATCH, /sample 2/);
  });

  test('empty binary frame closes with 4002', async () => {
    const job = await createJob(emulator);
    const stream = await connectStream(emulator, job.job_id, 'a');
    await stream.send(Buffer.alloc(0));
    await expectErrorClose(stream, CloseCode.FORMAT_MISMATCH, /empty binary frame/);
  });

  test('non-empty text frame closes with 4002', async () => {
    const job = await createJob(emulator);
    const stream = await connectStream(emulator, job.job_id, 'a');
    await stream.send('{"type":"end"}');
    await expectErrorClose(stream, CloseCode.FORMAT_MISMATCH, /text frame/);
  });

  test('audio after end of stream closes with 4002', async () => {
    const job = await createJob(emulator);
    emulator.faults.withholdDone({ jobId: job.job_id });
    const stream = await connectStream(emulator, job.job_id, 'a');
    await stream.send(Buffer.alloc(640));
    await stream.end();
    await emulator.waitFor((event) => event.type === 'end_of_stream' && event.jobId === job.job_id, 2000);
    await stream.send(Buffer.alloc(640));
    await expectErrorClose(stream, CloseCode.FORMAT_MISMATCH, /after end of stream/);
    assert.equal(stream.messagesOf('done').length, 0);
    assert.equal(emulator.getRecording(job.job_id, 'a')?.audio.length, 640);
  });

  test('audio racing done is dropped', async () => {
    const job = await createJob(emulator);
    const stream = await connectStream(emulator, job.job_id, 'a');
    await stream.send(Buffer.alloc(640));
    // The end and the late frame leave together; the server has already
    // sent done and its close when it reads the frame.
    stream.ws.send('');
    stream.ws.send(Buffer.alloc(640));
    const closed = await stream.closed;
    assert.equal(closed.code, CloseCode.NORMAL);
    assert.equal(stream.messagesOf('done').length, 1);
    await emulator.waitFor((event) => event.type === 'audio_dropped' && event.jobId === job.job_id, 2000);
    assert.equal(emulator.getRecording(job.job_id, 'a')?.audio.length, 640);
  });

  test('results then done and 1000', async () => {
    const job = await createJob(emulator);
    const stream = await connectStream(emulator, job.job_id, 'room-1');
    await sendAll(stream, TONE.subarray(0, 2 * 32000));
    // Two full seconds: one result per second per analysis arrives before the end.
    await stream.until(() => stream.messagesOf('result').length >= 4, 5000, 'four results');
    await sendAll(stream, TONE.subarray(2 * 32000));
    await stream.end();
    const closed = await stream.closed;
    assert.equal(closed.code, CloseCode.NORMAL);
    assert.deepEqual(stream.unknownFrames, []);

    const types = stream.messages.map((message) => message.type);
    assert.equal(types.at(-1), 'done');
    assert.equal(types.filter((type) => type === 'done').length, 1);
    const done = stream.messagesOf('done')[0];
    assert.equal(done?.duration_ms, 2500);

    const results = stream.messagesOf('result').map((message) => message.result);
    assert.deepEqual(
      results.map((result) => [result.alias, result.analysis, result.start_ms, result.duration_ms]),
      [
        ['room-1', 'transcription', 0, 1000],
        ['room-1', 'toxicity', 0, 1000],
        ['room-1', 'transcription', 1000, 1000],
        ['room-1', 'toxicity', 1000, 1000],
        ['room-1', 'transcription', 2000, 500],
        ['room-1', 'toxicity', 2000, 500],
      ],
    );
    for (const result of results) {
      assert.equal(result.data['emulated'], true);
      // A sine of amplitude 0.25 has an RMS of 0.25 / sqrt(2): -15.05 dBFS.
      assert.ok(Math.abs((result.data['rms_dbfs'] as number) + 15.05) < 0.02, String(result.data['rms_dbfs']));
      assert.equal(result.data['active_ms'], result.duration_ms);
    }
    const fetched = await request(emulator, 'GET', `/job/${job.job_id}/results?per_page=100`);
    assert.deepEqual(fetched.body.data, results);

    const endEvents = emulator.events.filter((event) => event.jobId === job.job_id).map((event) => event.type);
    assert.ok(endEvents.indexOf('end_of_stream') < endEvents.indexOf('done_sent'));
    assert.ok(endEvents.indexOf('done_sent') < endEvents.indexOf('stream_closed'));
    const streamInfo = emulator.getJob(job.job_id)?.streams[0];
    assert.deepEqual(streamInfo, { alias: 'room-1', state: 'ended', received_bytes: TONE.length, received_ms: 2500 });
  });

  test('reconnect appends to alias', async () => {
    const job = await createJob(emulator);
    const first = await connectStream(emulator, job.job_id, 'room-1');
    assert.equal(emulator.getJob(job.job_id)?.streams[0]?.state, 'connected');
    await sendAll(first, TONE.subarray(0, 32000));
    first.ws.close(1000);
    await first.closed;
    await emulator.waitFor((event) => event.type === 'stream_closed' && event.jobId === job.job_id, 2000);
    assert.deepEqual(emulator.getJob(job.job_id)?.streams, [
      { alias: 'room-1', state: 'disconnected', received_bytes: 32000, received_ms: 1000 },
    ]);

    const second = await connectStream(emulator, job.job_id, 'room-1');
    await sendAll(second, TONE.subarray(32000, 48000));
    await second.end();
    assert.equal((await second.closed).code, CloseCode.NORMAL);
    assert.equal(second.messagesOf('done')[0]?.duration_ms, 1500);

    const recording = emulator.getRecording(job.job_id, 'room-1');
    assert.ok(recording);
    assert.deepEqual(recording.audio, TONE.subarray(0, 48000));
    assert.equal(recording.connections, 2);
    assert.equal(recording.endOfStream, true);
    assert.deepEqual(recording.format, { audio_format: 's16le', sample_rate: 16000, num_channels: 1 });
    // The second connection continues the alias's timeline.
    const starts = second.messagesOf('result').map((message) => message.result.start_ms);
    assert.deepEqual(starts, [1000, 1000]);
  });

  test('reconnect with other format closes with 1003', async () => {
    const job = await createJob(emulator);
    const first = await connectStream(emulator, job.job_id, 'a');
    first.ws.close();
    await first.closed;
    await emulator.waitFor((event) => event.type === 'stream_closed' && event.jobId === job.job_id, 2000);
    const second = await connectStream(emulator, job.job_id, 'a', { audio_format: 's16le', sample_rate: 48000, num_channels: 1 });
    await expectErrorClose(second, CloseCode.INVALID_QUERY, /same format/);
  });

  test('container stream counts bytes only', async () => {
    const job = await createJob(emulator, { mode: 'realtime', analyses: ['transcription'] });
    const stream = await connectStream(emulator, job.job_id, 'ogg', { audio_format: 'ogg' });
    await stream.send(Buffer.from('OggS'));
    await stream.send(Buffer.alloc(1001, 7));
    await stream.end();
    assert.equal((await stream.closed).code, CloseCode.NORMAL);
    const results = stream.messagesOf('result').map((message) => message.result);
    assert.equal(results.length, 1);
    assert.equal(results[0]?.data['level_known'], false);
    assert.equal(results[0]?.data['received_bytes'], 1005);
    assert.equal(stream.messagesOf('done')[0]?.duration_ms, 0);
    assert.deepEqual(emulator.getJob(job.job_id)?.streams[0], { alias: 'ogg', state: 'ended', received_bytes: 1005, received_ms: 0 });
  });
});

describe('emulator stream keepalive', () => {
  let emulator: Emulator;

  before(async () => {
    emulator = await Emulator.start({ port: 0, idleTimeoutMs: 300 });
  });

  after(async () => {
    await emulator.close();
  });

  test('silent connection closes with 1001', async () => {
    const job = await createJob(emulator);
    const stream = await connectStream(emulator, job.job_id, 'a');
    const closed = await stream.closed;
    assert.equal(closed.code, CloseCode.GOING_AWAY);
    const event = await emulator.waitFor((each) => each.type === 'stream_closed' && each.jobId === job.job_id, 2000);
    assert.equal(event.byServer, true);
    assert.equal(emulator.getJob(job.job_id)?.streams[0]?.state, 'disconnected');
  });

  test('pings keep connection open', async () => {
    const job = await createJob(emulator);
    const stream = await connectStream(emulator, job.job_id, 'a');
    const pinger = setInterval(() => stream.ws.ping(), 100);
    try {
      // Eight pongs span more than twice the 300 ms idle timeout.
      await stream.until(() => stream.pongs >= 8, 5000, 'eight pongs');
      assert.equal(stream.ws.readyState, stream.ws.OPEN);
    } finally {
      clearInterval(pinger);
    }
    assert.equal((await stream.closed).code, CloseCode.GOING_AWAY);
  });
});

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { Emulator } from '../../src/emulator/emulator.ts';
import { EmulatorRejection } from '../../src/emulator/emulator-rejection.ts';
import { CloseCode } from '../../src/jobs/protocol.ts';
import { basicAuth, chunk, connectStream, createJob, expectUpgradeRejected, request, sineS16le } from './emulator-helpers.ts';

/**
 * Lets fetch's connection pool see the connections that the restart closed.
 * Client and emulator share one event loop, so the test could otherwise send
 * its next request on a pooled socket before the loop has polled its FIN.
 */
function clientSawRestart(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

describe('emulator faults', () => {
  let emulator: Emulator;

  before(async () => {
    emulator = await Emulator.start({ port: 0, finalizeDelayMs: 10 });
  });

  afterEach(() => {
    emulator.faults.clear();
  });

  after(async () => {
    await emulator.close();
  });

  test('dropConnections destroys matching sockets', async () => {
    const job = await createJob(emulator);
    const dropped = await connectStream(emulator, job.job_id, 'a');
    const untouched = await connectStream(emulator, job.job_id, 'b');
    assert.equal(emulator.faults.dropConnections({ jobId: job.job_id, alias: 'a' }), 1);
    const closed = await dropped.closed;
    assert.equal(closed.code, 1006, 'a dropped socket has no close frame');
    const event = await emulator.waitFor((each) => each.type === 'stream_closed' && each.alias === 'a' && each.jobId === job.job_id, 2000);
    assert.equal(event.byServer, true);
    assert.equal(untouched.ws.readyState, untouched.ws.OPEN);
    assert.deepEqual(
      emulator.getJob(job.job_id)?.streams.map((stream) => [stream.alias, stream.state]),
      [
        ['a', 'disconnected'],
        ['b', 'connected'],
      ],
    );
    untouched.ws.close();
    await untouched.closed;
  });

  test('closeStreams sends error and code', async () => {
    const job = await createJob(emulator);
    const stream = await connectStream(emulator, job.job_id, 'a');
    assert.equal(emulator.faults.closeStreams(CloseCode.SERVER_ERROR, 'maintenance', { jobId: job.job_id }), 1);
    const closed = await stream.closed;
    assert.equal(closed.code, CloseCode.SERVER_ERROR);
    assert.equal(closed.reason, 'maintenance');
    assert.deepEqual(stream.messagesOf('error').map((message) => message.error), ['maintenance']);

    const other = await connectStream(emulator, job.job_id, 'a');
    emulator.faults.closeStreams(CloseCode.GOING_AWAY, undefined, { jobId: job.job_id });
    assert.equal((await other.closed).code, CloseCode.GOING_AWAY);
    assert.equal(other.messagesOf('error').length, 0);
  });

  test('closeStreams rejects reserved codes', () => {
    for (const code of [1005, 1006, 1015, 999, 5000]) {
      assert.throws(() => emulator.faults.closeStreams(code), EmulatorRejection, String(code));
    }
  });

  test('refuseNextUpgrades rejects with status', async () => {
    const job = await createJob(emulator);
    emulator.faults.refuseNextUpgrades(2, 429, 3);
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const rejected = await expectUpgradeRejected(connectStream(emulator, job.job_id, 'a'));
      assert.equal(rejected.status, 429);
      assert.equal(rejected.headers['retry-after'], '3');
      assert.equal(rejected.body.error.code, 'rate_limited');
    }
    emulator.faults.refuseNextUpgrades(1, 503);
    const unavailable = await expectUpgradeRejected(connectStream(emulator, job.job_id, 'a'));
    assert.equal(unavailable.status, 503);
    assert.equal(unavailable.headers['retry-after'], '1');
    const stream = await connectStream(emulator, job.job_id, 'a');
    stream.ws.close();
    await stream.closed;
  });

  test('refuseNextRequests rejects with status', async () => {
    emulator.faults.refuseNextRequests(1, 429, 7);
    const rejected = await request(emulator, 'GET', '/jobs');
    assert.equal(rejected.status, 429);
    assert.equal(rejected.headers.get('retry-after'), '7');
    assert.equal(rejected.body.error.code, 'rate_limited');
    emulator.faults.refuseNextRequests(2, 500);
    assert.equal((await request(emulator, 'POST', '/jobs', { body: { mode: 'file', analyses: ['a'] } })).status, 500);
    const second = await request(emulator, 'GET', '/jobs');
    assert.equal(second.status, 500);
    assert.equal(second.headers.get('retry-after'), null);
    assert.equal((await request(emulator, 'GET', '/jobs')).status, 200);
    assert.throws(() => emulator.faults.refuseNextRequests(1, 200), EmulatorRejection);
  });

  test('pauseReading delays but keeps audio', async () => {
    const job = await createJob(emulator);
    const stream = await connectStream(emulator, job.job_id, 'a');
    const audio = sineS16le({ frequencyHz: 500, sampleRateHz: 16000, durationMs: 2000, amplitude: 0.3 });
    const pauseMs = 600;
    assert.equal(emulator.faults.pauseReading(pauseMs, { jobId: job.job_id }), 1);
    const pingedAt = performance.now();
    stream.ws.ping();
    for (const frame of chunk(audio, 640)) {
      stream.ws.send(frame);
    }
    await stream.until(() => stream.pongs >= 1, 5000, 'the pong after the pause');
    const pongDelayMs = performance.now() - pingedAt;
    assert.ok(pongDelayMs >= pauseMs / 2, `pong came after ${pongDelayMs} ms while reading was paused for ${pauseMs} ms`);
    await stream.end();
    assert.equal((await stream.closed).code, CloseCode.NORMAL);
    assert.deepEqual(emulator.getRecording(job.job_id, 'a')?.audio, audio);
  });

  test('pauseReading grows client bufferedAmount', async () => {
    const job = await createJob(emulator);
    const paused = await connectStream(emulator, job.job_id, 'paused');
    const probe = await connectStream(emulator, job.job_id, 'probe');
    emulator.faults.pauseReading(1500, { jobId: job.job_id, alias: 'paused' });
    // 32 MiB: the paused server reads nothing, so its TCP receive window
    // stays small and most of this waits in the client's queue.
    const frame = Buffer.alloc(64 * 1024);
    for (let i = 0; i < 512; i += 1) {
      paused.ws.send(frame);
    }
    // Each ping round trip on the other stream lets the event loop poll every
    // socket, so a server that still read would have received bytes by now.
    for (let round = 1; round <= 5; round += 1) {
      probe.ws.ping();
      await probe.until(() => probe.pongs >= round, 2000, `pong ${round}`);
    }
    assert.equal(emulator.getRecording(job.job_id, 'paused')?.receivedBytes, 0);
    assert.ok(paused.ws.bufferedAmount > 4 * 1024 * 1024, `bufferedAmount ${paused.ws.bufferedAmount}`);
    paused.ws.terminate();
    probe.ws.terminate();
    await Promise.all([paused.closed, probe.closed]);
  });

  test('withholdDone keeps stream open after end', async () => {
    const job = await createJob(emulator);
    emulator.faults.withholdDone({ jobId: job.job_id });
    const stream = await connectStream(emulator, job.job_id, 'a');
    await stream.send(Buffer.alloc(640));
    await stream.end();
    stream.ws.ping();
    // The pong comes after the server handled "", so a done would have come first.
    await stream.until(() => stream.pongs >= 1, 2000, 'a pong');
    assert.equal(stream.messagesOf('done').length, 0);
    assert.equal(stream.ws.readyState, stream.ws.OPEN);
    assert.equal(emulator.getJob(job.job_id)?.streams[0]?.state, 'ended');
    stream.ws.close(1000);
    await stream.closed;
  });

  test('delayDone postpones done', async () => {
    const job = await createJob(emulator);
    emulator.faults.delayDone(300, { jobId: job.job_id });
    const stream = await connectStream(emulator, job.job_id, 'a');
    await stream.send(Buffer.alloc(640));
    await stream.end();
    assert.equal((await stream.closed).code, CloseCode.NORMAL);
    assert.equal(stream.messagesOf('done').length, 1);
    const ended = await emulator.waitFor((event) => event.type === 'end_of_stream' && event.jobId === job.job_id, 1000);
    const done = await emulator.waitFor((event) => event.type === 'done_sent' && event.jobId === job.job_id, 1000);
    assert.ok(done.atMs - ended.atMs >= 250, `done sent ${done.atMs - ended.atMs} ms after end of stream`);
  });

  test('ignorePings withholds pongs', async () => {
    const job = await createJob(emulator);
    const stream = await connectStream(emulator, job.job_id, 'a');
    stream.ws.ping();
    await stream.until(() => stream.pongs === 1, 2000, 'the first pong');
    emulator.faults.ignorePings(true);
    stream.ws.ping();
    await stream.end();
    // done is sent after the server handled the ping, so a pong would precede it.
    await stream.until(() => stream.messagesOf('done').length === 1, 2000, 'done');
    assert.equal(stream.pongs, 1);
    await stream.closed;

    emulator.faults.ignorePings(false);
    const next = await connectStream(emulator, job.job_id, 'b');
    next.ws.ping();
    await next.until(() => next.pongs === 1, 2000, 'a pong after ignorePings(false)');
    next.ws.close();
    await next.closed;
  });

  test('restart keeps port and jobs', async () => {
    const job = await createJob(emulator);
    const baseUrl = emulator.baseUrl;
    const first = await connectStream(emulator, job.job_id, 'a');
    await first.send(Buffer.alloc(640, 1));
    await emulator.faults.restart();
    assert.equal((await first.closed).code, CloseCode.GOING_AWAY);
    assert.equal(emulator.baseUrl, baseUrl);
    await emulator.waitFor((event) => event.type === 'server_restarted', 1000);
    await clientSawRestart();

    const fetched = await request(emulator, 'GET', `/job/${job.job_id}`);
    assert.equal(fetched.status, 200);
    assert.equal(fetched.body.streams[0].state, 'disconnected');

    const second = await connectStream(emulator, job.job_id, 'a');
    await second.send(Buffer.alloc(640, 2));
    await second.end();
    assert.equal((await second.closed).code, CloseCode.NORMAL);
    const recording = emulator.getRecording(job.job_id, 'a');
    assert.deepEqual(recording?.audio, Buffer.concat([Buffer.alloc(640, 1), Buffer.alloc(640, 2)]));
    assert.equal(recording?.connections, 2);

    const third = await connectStream(emulator, job.job_id, 'b');
    await emulator.faults.restart({ drop: true, downtimeMs: 50 });
    assert.equal((await third.closed).code, 1006);
    await clientSawRestart();
    assert.equal((await request(emulator, 'GET', '/jobs')).status, 200);
  });
});

describe('emulator admin endpoint', () => {
  test('disabled by default', async () => {
    const emulator = await Emulator.start({ port: 0 });
    try {
      const response = await request(emulator, 'POST', '/_emulator/faults', { body: { action: 'clear' } });
      assert.equal(response.status, 404);
    } finally {
      await emulator.close();
    }
  });

  test('applies fault actions', async () => {
    const emulator = await Emulator.start({ port: 0, adminEndpoint: true });
    try {
      const unauthorized = await request(emulator, 'POST', '/_emulator/faults', {
        body: { action: 'clear' },
        auth: basicAuth(emulator.accountId, 'wrong'),
      });
      assert.equal(unauthorized.status, 401);

      const injected = await request(emulator, 'POST', '/_emulator/faults', {
        body: { action: 'refuse_next_requests', count: 1, status: 429, retry_after_seconds: 2 },
      });
      assert.equal(injected.status, 200);
      assert.deepEqual(injected.body, { action: 'refuse_next_requests', affected: 1 });
      const rejected = await request(emulator, 'GET', '/jobs');
      assert.equal(rejected.status, 429);
      assert.equal(rejected.headers.get('retry-after'), '2');

      const job = await createJob(emulator);
      const stream = await connectStream(emulator, job.job_id, 'a');
      const close = await request(emulator, 'POST', '/_emulator/faults', {
        body: { action: 'close_streams', code: 4029, reason: 'slow down', job_id: job.job_id },
      });
      assert.deepEqual(close.body, { action: 'close_streams', affected: 1 });
      assert.equal((await stream.closed).code, 4029);

      for (const body of [{ action: 'explode' }, { action: 'close_streams' }, { action: 'ignore_pings', on: 'yes' }, []]) {
        const invalid = await request(emulator, 'POST', '/_emulator/faults', { body });
        assert.equal(invalid.status, 422, JSON.stringify(body));
        assert.equal(invalid.body.error.code, 'invalid_fault', JSON.stringify(body));
      }

      const restart = await request(emulator, 'POST', '/_emulator/faults', { body: { action: 'restart' } });
      assert.equal(restart.status, 200);
      await emulator.waitFor((event) => event.type === 'server_restarted', 5000);
      await clientSawRestart();
      assert.equal((await request(emulator, 'GET', `/job/${job.job_id}`)).status, 200);
    } finally {
      await emulator.close();
    }
  });
});

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, afterEach, before, describe, test } from 'node:test';
import { Emulator, type EmulatorEvent } from '../../src/emulator/emulator.ts';
import { CloseCode, MEDIA_TYPE, type Result, type WebhookDelivery } from '../../src/jobs/protocol.ts';
import { chunk, connectStream, createJob, request, sineS16le } from './emulator-helpers.ts';

const TONE = sineS16le({ frequencyHz: 300, sampleRateHz: 16000, durationMs: 1500, amplitude: 0.5 });

function indexOfEvent(events: readonly EmulatorEvent[], predicate: (event: EmulatorEvent) => boolean): number {
  const index = events.findIndex(predicate);
  assert.ok(index >= 0, 'event missing');
  return index;
}

describe('emulator finalization', () => {
  let emulator: Emulator;

  before(async () => {
    emulator = await Emulator.start({ port: 0, finalizeDelayMs: 20 });
  });

  after(async () => {
    await emulator.close();
  });

  test('PATCH closes open streams with 4004', async () => {
    const job = await createJob(emulator);
    const open = await connectStream(emulator, job.job_id, 'open');
    for (const frame of chunk(TONE, 640)) {
      await open.send(frame);
    }
    await open.until(() => open.messagesOf('result').length >= 2, 5000, 'the first second of results');

    // This alias has ended but its done is still pending when the PATCH arrives.
    emulator.faults.delayDone(300, { jobId: job.job_id, alias: 'ending' });
    const ending = await connectStream(emulator, job.job_id, 'ending');
    await ending.send(Buffer.alloc(3200));
    await ending.end();
    await emulator.waitFor((event) => event.type === 'end_of_stream' && event.alias === 'ending', 2000);

    const patched = await request(emulator, 'PATCH', `/job/${job.job_id}`, { body: { status: 'finalizing' } });
    assert.equal(patched.status, 200);
    assert.equal(patched.body.status, 'finalizing');

    const openClosed = await open.closed;
    assert.equal(openClosed.code, CloseCode.JOB_NOT_ACTIVE);
    // The last half second was flushed into results before the close.
    const results = open.messagesOf('result').map((message) => message.result);
    assert.deepEqual(
      results.map((result) => [result.analysis, result.start_ms, result.duration_ms]),
      [
        ['transcription', 0, 1000],
        ['toxicity', 0, 1000],
        ['transcription', 1000, 500],
        ['toxicity', 1000, 500],
      ],
    );
    assert.equal(open.messages.at(-1)?.type, 'error');

    const endingClosed = await ending.closed;
    assert.equal(endingClosed.code, CloseCode.NORMAL);
    assert.equal(ending.messagesOf('done')[0]?.duration_ms, 100);

    const late = await connectStream(emulator, job.job_id, 'late');
    assert.equal((await late.closed).code, CloseCode.JOB_NOT_ACTIVE);
    assert.match(late.messagesOf('error')[0]?.error ?? '', /finalizing|finalized/);

    await emulator.waitFor((event) => event.type === 'job_finalized' && event.jobId === job.job_id, 5000);
    const events = emulator.events.filter((event) => event.jobId === job.job_id);
    const finalizedAt = indexOfEvent(events, (event) => event.type === 'job_finalized');
    for (const alias of ['open', 'ending']) {
      assert.ok(indexOfEvent(events, (event) => event.type === 'stream_closed' && event.alias === alias) < finalizedAt, alias);
    }
    const job2 = emulator.getJob(job.job_id);
    assert.equal(job2?.status, 'finalized');
    assert.deepEqual(
      job2?.streams.map((stream) => [stream.alias, stream.state]),
      [
        ['open', 'disconnected'],
        ['ending', 'ended'],
      ],
    );
    const fetched = await request(emulator, 'GET', `/job/${job.job_id}/results?per_page=100`);
    assert.equal(fetched.body.data.filter((result: Result) => result.alias === 'open').length, 4);
  });

  test('idle trigger waits for no stream', async () => {
    const job = await createJob(emulator, {
      mode: 'realtime',
      analyses: ['transcription'],
      finalization_trigger: [{ type: 'idle', idle_seconds: 0.3 }],
    });
    const stream = await connectStream(emulator, job.job_id, 'a');
    const pinger = setInterval(() => stream.ws.ping(), 100);
    try {
      // Eight pongs take more than twice idle_seconds with the stream connected.
      await stream.until(() => stream.pongs >= 8, 5000, 'eight pongs');
    } finally {
      clearInterval(pinger);
    }
    assert.equal(emulator.getJob(job.job_id)?.status, 'active');
    stream.ws.close();
    const requested = await emulator.waitFor(
      (event) => event.type === 'finalize_requested' && event.jobId === job.job_id,
      5000,
    );
    assert.equal(requested.detail, 'idle');
    const closed = await emulator.waitFor((event) => event.type === 'stream_closed' && event.jobId === job.job_id, 1000);
    assert.ok(requested.atMs - closed.atMs >= 250, `finalized ${requested.atMs - closed.atMs} ms after the stream closed`);
    await emulator.waitFor((event) => event.type === 'job_finalized' && event.jobId === job.job_id, 5000);
  });

  test('idle trigger without any stream', async () => {
    const job = await createJob(emulator, {
      mode: 'realtime',
      analyses: ['transcription'],
      finalization_trigger: [{ type: 'idle', idle_seconds: 0.1 }],
    });
    await emulator.waitFor((event) => event.type === 'job_finalized' && event.jobId === job.job_id, 5000);
    assert.equal(emulator.getJob(job.job_id)?.status, 'finalized');
  });

  test('all_streams_ended waits for every alias', async () => {
    const job = await createJob(emulator, {
      mode: 'realtime',
      analyses: ['transcription'],
      finalization_trigger: [{ type: 'all_streams_ended' }],
    });
    const first = await connectStream(emulator, job.job_id, 'a');
    const second = await connectStream(emulator, job.job_id, 'b');
    await first.send(Buffer.alloc(640));
    await first.end();
    assert.equal((await first.closed).code, CloseCode.NORMAL);
    await emulator.waitFor((event) => event.type === 'stream_closed' && event.alias === 'a' && event.jobId === job.job_id, 2000);
    assert.equal(emulator.getJob(job.job_id)?.status, 'active');

    await second.send(Buffer.alloc(640));
    await second.end();
    assert.equal((await second.closed).code, CloseCode.NORMAL, 'the ended alias must get done and 1000, not 4004');
    const requested = await emulator.waitFor(
      (event) => event.type === 'finalize_requested' && event.jobId === job.job_id,
      2000,
    );
    assert.equal(requested.detail, 'all_streams_ended');
    await emulator.waitFor((event) => event.type === 'job_finalized' && event.jobId === job.job_id, 5000);
  });

  test('manual job stays active after streams end', async () => {
    const job = await createJob(emulator);
    const stream = await connectStream(emulator, job.job_id, 'a');
    await stream.end();
    await stream.closed;
    await emulator.waitFor((event) => event.type === 'stream_closed' && event.jobId === job.job_id, 2000);
    assert.equal(emulator.getJob(job.job_id)?.status, 'active');
    assert.equal(
      emulator.events.some((event) => event.type === 'finalize_requested' && event.jobId === job.job_id),
      false,
    );
  });
});

describe('emulator webhooks', () => {
  let emulator: Emulator;
  let hook: Server;
  let hookUrl: string;
  let received: Array<{ body: WebhookDelivery; contentType: string | undefined }> = [];
  /** Status for each next POST; 200 once the list is empty. */
  let statuses: number[] = [];

  before(async () => {
    emulator = await Emulator.start({ port: 0, finalizeDelayMs: 10, webhookRetryDelayMs: 10, webhookMaxAttempts: 3 });
    hook = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (data: Buffer) => chunks.push(data));
      req.on('end', () => {
        const status = statuses.shift() ?? 200;
        if (status === 200) {
          received.push({ body: JSON.parse(Buffer.concat(chunks).toString()), contentType: req.headers['content-type'] });
        }
        res.writeHead(status).end();
      });
    });
    await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
    hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`;
  });

  afterEach(() => {
    received = [];
    statuses = [];
  });

  after(async () => {
    await emulator.close();
    hook.closeAllConnections();
    await new Promise((resolve) => hook.close(resolve));
  });

  test('results reach webhook after retries', async () => {
    statuses = [500, 503];
    const job = await createJob(emulator, {
      mode: 'realtime',
      analyses: ['transcription'],
      results_deliveries: [{ type: 'webhook', url: hookUrl }],
    });
    const stream = await connectStream(emulator, job.job_id, 'a');
    for (const frame of chunk(TONE, 640)) {
      await stream.send(frame);
    }
    await stream.end();
    await stream.closed;

    await emulator.waitFor(
      (event) => event.type === 'webhook_delivered' && event.jobId === job.job_id,
      5000,
    );
    // Two results in two deliveries (1 s, then the flushed 0.5 s).
    while (received.length < 2) {
      await emulator.waitFor(
        (event) => event.type === 'webhook_delivered' && event.jobId === job.job_id,
        5000,
        { fromIndex: emulator.events.length },
      );
    }

    assert.deepEqual(
      received.map((delivery) => delivery.body.job_id),
      [job.job_id, job.job_id],
    );
    assert.equal(received[0]?.contentType, MEDIA_TYPE);
    assert.deepEqual(
      received.flatMap((delivery) => delivery.body.results),
      emulator.getResults(job.job_id),
    );
    assert.equal(statuses.length, 0, 'the failing answers were not all consumed');
  });

  test('webhook gives up after max attempts', async () => {
    statuses = [500, 500, 500];
    const job = await createJob(emulator, {
      mode: 'file',
      analyses: ['transcription'],
      results_deliveries: [{ type: 'webhook', url: hookUrl }],
    });
    const form = new FormData();
    form.append('file', new Blob([Buffer.from('not a wav')]), 'a.bin');
    await request(emulator, 'POST', `/job/${job.job_id}/sources/media-files`, { rawBody: form });
    const failed = await emulator.waitFor((event) => event.type === 'webhook_failed' && event.jobId === job.job_id, 5000);
    assert.match(failed.detail ?? '', /status 500/);
    assert.equal(received.length, 0);
  });

  test('non-loopback webhook is skipped', async () => {
    const job = await createJob(emulator, {
      mode: 'file',
      analyses: ['transcription'],
      // 192.0.2.0/24 is TEST-NET-1 (RFC 5737); the emulator must not contact it.
      results_deliveries: [{ type: 'webhook', url: 'http://192.0.2.1/hook?token=secret' }],
    });
    const form = new FormData();
    form.append('file', new Blob([Buffer.from('not a wav')]), 'a.bin');
    await request(emulator, 'POST', `/job/${job.job_id}/sources/media-files`, { rawBody: form });
    const skipped = await emulator.waitFor((event) => event.type === 'webhook_skipped' && event.jobId === job.job_id, 2000);
    assert.equal(skipped.detail, 'http://192.0.2.1/hook');
  });
});

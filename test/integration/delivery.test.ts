import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { DEFAULT_DELIVERY } from '../../src/config/schema.ts';
import type { DeliveryConfig } from '../../src/config/types.ts';
import { Emulator } from '../../src/emulator/emulator.ts';
import { JobsClient } from '../../src/jobs/jobs-client.ts';
import { StreamConnection, type StreamOutcome } from '../../src/transport/stream-connection.ts';
import { JFK_WAV, decodeToS16le, withTimeout } from '../helpers/tools.ts';

/** 100 ms of 16 kHz mono s16le. */
const FRAME_BYTES = 3200;
const FRAME_MS = 100;

type DeliveryOverrides = Partial<Omit<DeliveryConfig, 'reconnect'>> & { reconnect?: Partial<DeliveryConfig['reconnect']> };

function delivery(overrides: DeliveryOverrides = {}): DeliveryConfig {
  return {
    ...DEFAULT_DELIVERY,
    ...overrides,
    reconnect: { ...DEFAULT_DELIVERY.reconnect, initial_delay_ms: 50, max_delay_ms: 400, ...overrides.reconnect },
  };
}

interface Harness {
  client: JobsClient;
  jobId: string;
  connection: StreamConnection;
}

async function openStream(
  emulator: Emulator,
  alias: string,
  config: DeliveryConfig,
  options: { lossless?: boolean } = {},
): Promise<Harness> {
  const client = new JobsClient({ baseUrl: emulator.baseUrl, accountId: emulator.accountId, apiKey: emulator.apiKey, retries: 1 });
  const job = await client.createJob({ mode: 'realtime', analyses: ['transcription'] });
  const endpoint = client.streamEndpoint(job.job_id, alias, { audioFormat: 's16le', sampleRateHz: 16000, channels: 1 });
  const connection = new StreamConnection({
    endpoint,
    delivery: config,
    lossless: options.lossless ?? false,
    fetchRemoteStatus: async () => {
      const current = await client.getJob(job.job_id);
      const stream = current.streams.find((candidate) => candidate.alias === alias);
      return stream === undefined ? undefined : { receivedBytes: stream.received_bytes, state: stream.state };
    },
  });
  connection.start();
  return { client, jobId: job.job_id, connection };
}

/**
 * Writes `pcm` in 100 ms frames, one every `intervalMs`, like a live source.
 * With `borrowed`, every frame goes through `writeBorrowed` in one Buffer,
 * which is overwritten as soon as the call returns.
 */
async function feedFrames(
  connection: StreamConnection,
  pcm: Buffer,
  intervalMs: number,
  onFrame?: (index: number) => void | Promise<void>,
  options: { borrowed?: boolean } = {},
): Promise<void> {
  const startMs = performance.now();
  const reused = Buffer.alloc(FRAME_BYTES);
  for (let index = 0; index * FRAME_BYTES < pcm.length; index += 1) {
    const data = pcm.subarray(index * FRAME_BYTES, (index + 1) * FRAME_BYTES);
    const durationMs = (data.length / FRAME_BYTES) * FRAME_MS;
    if (options.borrowed === true) {
      const borrowed = reused.subarray(0, data.copy(reused));
      connection.writeBorrowed({ data: borrowed, durationMs });
      reused.fill(0x55);
    } else {
      connection.write({ data, durationMs });
    }
    await onFrame?.(index);
    const waitMs = startMs + (index + 1) * intervalMs - performance.now();
    if (waitMs > 0) {
      await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
  }
}

/** Resolves once `condition` holds, checked every 10 ms for up to 5 s. */
async function poll(condition: () => boolean, what: string): Promise<void> {
  await withTimeout(
    (async () => {
      while (!condition()) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })(),
    5000,
    what,
  );
}

/** Resolves once `condition` holds, checked now and after every state change of the stream. */
async function waitFor(connection: StreamConnection, condition: () => boolean, timeoutMs: number, what = 'a stream state'): Promise<void> {
  if (condition()) {
    return;
  }
  let onChange: (() => void) | undefined;
  try {
    await withTimeout(
      new Promise<void>((resolve) => {
        onChange = (): void => {
          if (condition()) {
            resolve();
          }
        };
        connection.on('stateChange', onChange);
      }),
      timeoutMs,
      what,
    );
  } finally {
    if (onChange !== undefined) {
      connection.off('stateChange', onChange);
    }
  }
}

async function waitForStatus(connection: StreamConnection, status: string, timeoutMs: number): Promise<void> {
  await waitFor(connection, () => connection.status === status, timeoutMs, `stream state ${status}`);
}

describe('delivery through faults', () => {
  let emulator: Emulator;
  let pcm: Buffer;

  before(async () => {
    emulator = await Emulator.start({ port: 0, finalizeDelayMs: 10 });
    pcm = await decodeToS16le(JFK_WAV);
  });

  after(async () => {
    await emulator.close();
  });

  it('recovers a 5 s server outage byte for byte', async () => {
    const { jobId, connection } = await openStream(emulator, 'outage', delivery());
    await feedFrames(connection, pcm, FRAME_MS, async (index) => {
      if (index === 30) {
        // The restart drops every socket without a close frame and keeps the port closed for 5 s.
        void emulator.faults.restart({ drop: true, downtimeMs: 5000 });
      }
    });
    const outcome = await withTimeout(connection.end(), 20_000, 'end of stream');
    assert.equal(outcome.action, 'done');
    assert.equal(outcome.doneReceived, true);
    const recording = emulator.getRecording(jobId, 'outage');
    assert.ok(recording);
    assert.ok(recording.connections >= 2, `expected a reconnect, saw ${recording.connections} connection(s)`);
    assert.equal(recording.audio.length, pcm.length);
    assert.ok(recording.audio.equals(pcm), 'recording differs from the source after the outage');
    assert.equal(connection.stats.droppedBytes, 0);
  });

  it('recovers an outage with borrowed frames', async () => {
    // Frames queued in the outage and kept for resending must be copies, because the caller overwrites its Buffer.
    const { jobId, connection } = await openStream(emulator, 'borrowed', delivery());
    await feedFrames(
      connection,
      pcm,
      FRAME_MS,
      async (index) => {
        if (index === 30) {
          void emulator.faults.restart({ drop: true, downtimeMs: 3000 });
        }
      },
      { borrowed: true },
    );
    const outcome = await withTimeout(connection.end(), 20_000, 'end of stream');
    assert.equal(outcome.action, 'done');
    const recording = emulator.getRecording(jobId, 'borrowed');
    assert.ok(recording);
    assert.ok(recording.connections >= 2, `expected a reconnect, saw ${recording.connections} connection(s)`);
    assert.equal(recording.audio.length, pcm.length);
    assert.ok(recording.audio.equals(pcm), 'recording differs from the source');
  });

  it('resyncs once per socket across two drops', async () => {
    // The byte count of the first reconnect's lookup arrives after a second
    // reconnect. The second socket must still wait for its own count before
    // sending, or audio goes out twice.
    const client = new JobsClient({ baseUrl: emulator.baseUrl, accountId: emulator.accountId, apiKey: emulator.apiKey, retries: 1 });
    const job = await client.createJob({ mode: 'realtime', analyses: ['transcription'] });
    const alias = 'two-drops';
    const endpoint = client.streamEndpoint(job.job_id, alias, { audioFormat: 's16le', sampleRateHz: 16000, channels: 1 });
    const gates: Array<() => void> = [];
    const connection = new StreamConnection({
      endpoint,
      delivery: delivery(),
      lossless: false,
      fetchRemoteStatus: async () => {
        // The count is read now and handed back only when the test opens the gate.
        const current = await client.getJob(job.job_id);
        const stream = current.streams.find((candidate) => candidate.alias === alias);
        await new Promise<void>((resolve) => gates.push(resolve));
        return stream === undefined ? undefined : { receivedBytes: stream.received_bytes, state: stream.state };
      },
    });
    connection.start();
    const frames = Array.from({ length: 15 }, (_, index) => pcm.subarray(index * FRAME_BYTES, (index + 1) * FRAME_BYTES));
    try {
      await waitForStatus(connection, 'open', 5000);
      for (const data of frames.slice(0, 10)) {
        connection.write({ data, durationMs: FRAME_MS });
      }
      await poll(() => (emulator.getRecording(job.job_id, alias)?.audio.length ?? 0) >= 10 * FRAME_BYTES, 'the first 10 frames at the server');

      emulator.faults.closeStreams(1001, 'first drop', { alias });
      await poll(() => gates.length === 1 && connection.status === 'open', 'the first resync');
      emulator.faults.closeStreams(1001, 'second drop', { alias });
      await poll(() => gates.length === 2 && connection.stats.connections === 3, 'the second resync');
      // The first lookup returns while the third socket still waits for its own, and audio written now must wait too.
      gates[0]!();
      await new Promise((resolve) => setTimeout(resolve, 50));
      for (const data of frames.slice(10)) {
        connection.write({ data, durationMs: FRAME_MS });
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
      gates[1]!();
      // Give the second resync time to finish before end(), so that a resend it makes shows in the recording.
      await new Promise((resolve) => setTimeout(resolve, 200));
    } catch (error) {
      connection.abort('test failed');
      throw error;
    }

    const outcome = await withTimeout(connection.end(), 10_000, 'end of stream');
    assert.equal(outcome.action, 'done');
    const recording = emulator.getRecording(job.job_id, alias);
    assert.ok(recording);
    assert.equal(recording.connections, 3);
    assert.equal(recording.audio.length, 15 * FRAME_BYTES);
    assert.ok(recording.audio.equals(Buffer.concat(frames)), 'recording differs from the frames written');
    assert.equal(connection.stats.resentBytes, 0);
  });

  it('drops exactly the audio beyond max_outage_ms', async () => {
    const maxOutageMs = 1000;
    const { jobId, connection } = await openStream(emulator, 'long-outage', delivery({ max_outage_ms: maxOutageMs }));
    // Four times real time: 3 s of downtime covers 12 s of audio, far over the bound.
    await feedFrames(connection, pcm, FRAME_MS / 4, async (index) => {
      if (index === 20) {
        void emulator.faults.restart({ drop: true, downtimeMs: 3000 });
      }
      if (index === 60) {
        await waitForStatus(connection, 'open', 10_000);
      }
    });
    await withTimeout(connection.end(), 20_000, 'end of stream');
    const recording = emulator.getRecording(jobId, 'long-outage');
    assert.ok(recording);
    const droppedBytes = connection.stats.droppedBytes;
    assert.ok(droppedBytes > 0, 'nothing was dropped');
    assert.equal(droppedBytes % FRAME_BYTES, 0, 'dropped audio is not whole frames');
    assert.ok(connection.stats.droppedMs >= 1000, `dropped only ${connection.stats.droppedMs} ms`);
    assert.equal(recording.audio.length, pcm.length - droppedBytes, 'received + dropped does not add up to the source');

    // The recording is the source with one contiguous gap of exactly the dropped bytes.
    let gapStart = 0;
    while (gapStart < recording.audio.length && recording.audio[gapStart] === pcm[gapStart]) {
      gapStart += 1;
    }
    gapStart -= gapStart % FRAME_BYTES;
    assert.ok(recording.audio.subarray(0, gapStart).equals(pcm.subarray(0, gapStart)), 'audio before the gap differs');
    assert.ok(
      recording.audio.subarray(gapStart).equals(pcm.subarray(gapStart + droppedBytes)),
      `audio after the gap at byte ${gapStart} is not the source resumed ${droppedBytes} bytes later`,
    );
    // The gap sits inside the outage: after frame 20 and before the end of the stream.
    assert.ok(gapStart >= 20 * FRAME_BYTES, `gap starts at ${gapStart}, before the outage`);
  });

  describe('close codes and refused upgrades', () => {
    const cases: Array<{ code: number; action: StreamOutcome['action'] | 'reconnects' }> = [
      { code: 1000, action: 'done' },
      { code: 1001, action: 'reconnects' },
      { code: 1011, action: 'reconnects' },
      { code: 1013, action: 'reconnects' },
      { code: 4029, action: 'reconnects' },
      { code: 4030, action: 'reconnects' },
      { code: 1003, action: 'stop_stream' },
      { code: 4002, action: 'stop_stream' },
      { code: 4004, action: 'stop_job' },
      { code: 4001, action: 'stop_agent' },
      { code: 4003, action: 'stop_agent' },
      { code: 4031, action: 'stop_agent' },
    ];
    for (const { code, action } of cases) {
      it(`close ${code} leads to ${action}`, async () => {
        const alias = `close-${code}`;
        const { jobId, connection } = await openStream(emulator, alias, delivery());
        connection.write({ data: pcm.subarray(0, FRAME_BYTES), durationMs: FRAME_MS });
        await waitForStatus(connection, 'open', 5000);
        const affected = emulator.faults.closeStreams(code, 'test', { jobId, alias });
        assert.equal(affected, 1);
        if (action === 'reconnects') {
          await waitFor(connection, () => connection.status === 'open' && connection.stats.connections >= 2, 5000);
          assert.equal(connection.stats.reconnects, 1);
          const outcome = await withTimeout(connection.end(), 5000, 'end of stream');
          assert.equal(outcome.action, 'done');
          return;
        }
        const outcome = await withTimeout(connection.closed, 5000, 'stream close');
        assert.equal(outcome.action, action);
        assert.equal(connection.stats.connections, 1, 'the stream reconnected after a final close code');
        if (action !== 'done') {
          assert.equal(outcome.error?.closeCode, code);
        }
      });
    }

    const statusCases: Array<{ status: number; action: StreamOutcome['action'] | 'reconnects' }> = [
      { status: 401, action: 'stop_agent' },
      { status: 403, action: 'stop_agent' },
      { status: 404, action: 'stop_job' },
      { status: 429, action: 'reconnects' },
      { status: 500, action: 'reconnects' },
      { status: 503, action: 'reconnects' },
    ];
    for (const { status, action } of statusCases) {
      it(`refused upgrade ${status} leads to ${action}`, async () => {
        emulator.faults.refuseNextUpgrades(1, status, status === 429 ? 1 : undefined);
        const startedMs = performance.now();
        const { connection } = await openStream(emulator, `refused-${status}`, delivery());
        if (action === 'reconnects') {
          await waitForStatus(connection, 'open', 5000);
          if (status === 429) {
            assert.ok(performance.now() - startedMs >= 950, 'Retry-After of 1 s was not honoured');
          }
          const outcome = await withTimeout(connection.end(), 5000, 'end of stream');
          assert.equal(outcome.action, 'done');
          return;
        }
        const outcome = await withTimeout(connection.closed, 5000, 'stream close');
        assert.equal(outcome.action, action);
        assert.equal(outcome.error?.statusCode, status);
        assert.equal(connection.stats.connections, 0);
      });
    }
  });

  it('bounds memory while the server stops reading', async () => {
    const maxOutageMs = 2000;
    const config = delivery({ max_outage_ms: maxOutageMs, high_water_bytes: 16_384, low_water_bytes: 4096 });
    const { connection } = await openStream(emulator, 'stalled', config);
    await waitForStatus(connection, 'open', 5000);
    emulator.faults.pauseReading(60_000, { alias: 'stalled' });
    try {
      const gc = exposeGc();
      const before = await settledArrayBuffers(gc);
      // Loopback sockets buffer megabytes in the kernel before the sender gets
      // any backpressure, so the source writes 64 KiB frames: 1000 of them are
      // 64 MiB, far more than the kernel holds, while the server reads nothing.
      const frameBytes = 65_536;
      let maxPendingBytes = 0;
      for (let index = 0; index < 1000; index += 1) {
        connection.write({ data: Buffer.alloc(frameBytes, index % 256), durationMs: FRAME_MS });
        maxPendingBytes = Math.max(maxPendingBytes, connection.pendingBytes);
        if (index % 20 === 0) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
      // The outage buffer never contains more than max_outage_ms of audio.
      const boundBytes = (maxOutageMs / FRAME_MS) * frameBytes;
      assert.ok(maxPendingBytes <= boundBytes, `pending reached ${maxPendingBytes} bytes, over ${boundBytes}`);
      assert.ok(connection.stats.droppedMs > 0, 'no audio was counted as dropped');
      assert.equal(connection.stats.acceptedBytes, 1000 * frameBytes);
      const retainedBytes = (await settledArrayBuffers(gc)) - before;
      // Bound: the outage buffer (1.25 MiB), the resend window (3 s, 1.9 MiB)
      // and the socket's high-water mark, against the 64 MiB an unbounded queue would hold.
      assert.ok(retainedBytes < 8 * 1024 * 1024, `buffers grew by ${retainedBytes} bytes while writing 64 MiB`);
    } finally {
      // Also after a failed assertion: a connection left open keeps the test process alive.
      connection.abort('test finished');
    }
  });

  it('resumes a lossless writer after a stall', async () => {
    const config = delivery({ high_water_bytes: 16_384, low_water_bytes: 4096 });
    const { jobId, connection } = await openStream(emulator, 'resumed', config, { lossless: true });
    await waitForStatus(connection, 'open', 5000);
    emulator.faults.pauseReading(1000, { alias: 'resumed' });

    // 32 MiB in 64 KiB frames is more than loopback's socket buffers take
    // while the server reads nothing, so the writer must wait for drain.
    const frameBytes = 65_536;
    const frames = 512;
    const sent: Buffer[] = [];
    let waits = 0;
    try {
      for (let index = 0; index < frames; index += 1) {
        const data = Buffer.alloc(frameBytes, index % 251);
        sent.push(data);
        if (!connection.write({ data, durationMs: 2048 })) {
          waits += 1;
          await withTimeout(
            new Promise<void>((resolve) => connection.once('drain', () => resolve())),
            10_000,
            `drain after frame ${index}`,
          );
        }
      }
    } catch (error) {
      connection.abort('test failed');
      throw error;
    }

    const outcome = await withTimeout(connection.end(), 20_000, 'end of stream');
    assert.equal(outcome.action, 'done');
    assert.ok(waits > 0, 'the writer never had to wait for drain');
    const recording = emulator.getRecording(jobId, 'resumed');
    assert.ok(recording);
    assert.equal(recording.audio.length, frames * frameBytes);
    assert.ok(recording.audio.equals(Buffer.concat(sent)), 'recording differs from what was written');
  });

  it('replaces a connection whose pings go unanswered', async () => {
    const config = delivery({ ping_interval_ms: 200, pong_timeout_ms: 300 });
    const { connection } = await openStream(emulator, 'silent-peer', config);
    await waitForStatus(connection, 'open', 5000);
    emulator.faults.ignorePings(true);
    try {
      await withTimeout(
        new Promise<void>((resolve) => {
          const onChange = (): void => {
            if (connection.stats.connections >= 2) {
              connection.off('stateChange', onChange);
              resolve();
            }
          };
          connection.on('stateChange', onChange);
        }),
        3000,
        'the connection to be replaced',
      );
    } finally {
      emulator.faults.ignorePings(false);
    }
    const outcome = await withTimeout(connection.end(), 5000, 'end of stream');
    assert.equal(outcome.action, 'done');
  });

  it('keeps counting attempts while a server flaps', async () => {
    const alias = 'flapping';
    const { jobId, connection } = await openStream(
      emulator,
      alias,
      delivery({ reconnect: { initial_delay_ms: 20, max_delay_ms: 5000, stable_after_ms: 10_000 } }),
    );
    // The server accepts each connection and closes it with 1011 at once.
    const stopFlapping = emulator.onEvent((event) => {
      if (event.type === 'stream_open' && event.jobId === jobId && event.alias === alias) {
        setImmediate(() => emulator.faults.closeStreams(1011, 'flap', { jobId, alias }));
      }
    });
    const attempts: number[] = [];
    connection.on('stateChange', ({ to }) => {
      if (to === 'reconnecting') {
        attempts.push(connection.stats.connections);
      }
    });
    try {
      await waitFor(connection, () => connection.stats.connections >= 5, 20_000, 'five connections');
    } finally {
      stopFlapping();
    }
    connection.abort('test finished');
    // Without a stable connection the failure count only grows, so each
    // reconnect waits under a higher ceiling instead of starting over.
    const failures = connection.consecutiveFailures;
    assert.ok(failures >= 4, `failure count is ${failures} after ${connection.stats.connections} short connections`);
  });

  it('aborts a backoff sleep at once', async () => {
    emulator.faults.refuseNextUpgrades(1, 503);
    const { connection } = await openStream(
      emulator,
      'abort-backoff',
      delivery({ reconnect: { initial_delay_ms: 60_000, max_delay_ms: 60_000 } }),
    );
    await waitForStatus(connection, 'reconnecting', 5000);
    const startedMs = performance.now();
    connection.abort('shutdown');
    const outcome = await withTimeout(connection.closed, 1000, 'the stream to close');
    assert.equal(outcome.action, 'aborted');
    assert.ok(performance.now() - startedMs < 500, 'abort waited for the backoff delay');
  });

  it('end() cuts a backoff sleep short', async () => {
    emulator.faults.refuseNextUpgrades(1, 503);
    const { jobId, connection } = await openStream(
      emulator,
      'end-backoff',
      delivery({ reconnect: { initial_delay_ms: 60_000, max_delay_ms: 60_000 } }),
    );
    await waitForStatus(connection, 'reconnecting', 5000);
    connection.write({ data: pcm.subarray(0, FRAME_BYTES), durationMs: FRAME_MS });
    const outcome = await withTimeout(connection.end(), 5000, 'end of stream after the backoff was cut short');
    assert.equal(outcome.action, 'done');
    assert.equal(outcome.doneReceived, true);
    assert.ok(emulator.getRecording(jobId, 'end-backoff')?.audio.equals(pcm.subarray(0, FRAME_BYTES)));
  });

  it('leaks no timers or sockets over reconnects', async () => {
    const baseline = countResources();
    const { jobId, connection } = await openStream(emulator, 'churn', delivery());
    for (let cycle = 0; cycle < 15; cycle += 1) {
      await waitForStatus(connection, 'open', 5000);
      connection.write({ data: pcm.subarray(cycle * FRAME_BYTES, (cycle + 1) * FRAME_BYTES), durationMs: FRAME_MS });
      emulator.faults.dropConnections({ jobId, alias: 'churn' });
      await waitForStatus(connection, 'connecting', 5000);
    }
    await waitForStatus(connection, 'open', 5000);
    const outcome = await withTimeout(connection.end(), 5000, 'end of stream');
    assert.equal(outcome.action, 'done');
    assert.equal(connection.listenerCount('stateChange'), 0);
    // Sockets and timers close asynchronously; give them a moment.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const recording = emulator.getRecording(jobId, 'churn');
    assert.ok(recording?.audio.equals(pcm.subarray(0, 15 * FRAME_BYTES)), 'audio across reconnects differs from the source');
    const afterwards = countResources();
    assert.ok(afterwards.sockets <= baseline.sockets + 1, `sockets: ${baseline.sockets} before, ${afterwards.sockets} after`);
    assert.ok(afterwards.timers <= baseline.timers + 2, `timers: ${baseline.timers} before, ${afterwards.timers} after`);
  });
});

/** Returns V8's garbage collector, so memory checks measure what is retained, not garbage. */
function exposeGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/**
 * Returns `arrayBuffers` of `process.memoryUsage()` once garbage collection
 * has freed what it can. V8 can free the memory of dead ArrayBuffers after a
 * collection returns, so one read right after `gc()` may still count them.
 * This collects and reads until two reads agree.
 */
async function settledArrayBuffers(gc: () => void): Promise<number> {
  let previous = Number.NaN;
  for (let attempt = 0; attempt < 20; attempt++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 20));
    const current = process.memoryUsage().arrayBuffers;
    if (current === previous) {
      return current;
    }
    previous = current;
  }
  return previous;
}

function countResources(): { sockets: number; timers: number } {
  const resources = process.getActiveResourcesInfo();
  return {
    sockets: resources.filter((name) => name === 'TCPSocketWrap').length,
    timers: resources.filter((name) => name === 'Timeout').length,
  };
}

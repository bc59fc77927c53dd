import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { Emulator } from '../../src/emulator/emulator.ts';
import type { AgentSnapshot } from '../../src/service/agent-snapshot.ts';
import { buildRtpPacket } from '../helpers/rtp-test-kit.ts';
import { JFK_WAV, makeTempDir, startCli, withTimeout, writeConfig, type CliRun } from '../helpers/tools.ts';
import { fetchText, metricValue, metricsPort, serviceConfigYaml } from './service-helpers.ts';

/** Finds a free UDP port on loopback by binding port 0 and releasing it. */
async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  const { port } = socket.address();
  socket.close();
  return port;
}

/** Finds a TCP port on loopback that nothing listens on. */
async function closedTcpPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Re-reads the status until `condition` holds; rejects after `timeoutMs`. */
async function waitForStatus(baseUrl: string, condition: (snapshot: AgentSnapshot) => boolean, timeoutMs: number, what: string): Promise<AgentSnapshot> {
  const deadline = Date.now() + timeoutMs;
  let last: AgentSnapshot | undefined;
  while (Date.now() < deadline) {
    last = JSON.parse((await fetchText(`${baseUrl}/status.json`)).body) as AgentSnapshot;
    if (condition(last)) {
      return last;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last status: ${JSON.stringify(last)}`);
}

describe('metrics endpoint', () => {
  let emulator: Emulator;
  let dir: string;
  let run: CliRun;
  let baseUrl: string;
  let rtpPort: number;

  before(async () => {
    emulator = await Emulator.start({ port: 0 });
    dir = await makeTempDir('service-metrics-');
    rtpPort = await freeUdpPort();
    const config = await writeConfig(
      dir,
      serviceConfigYaml({
        baseUrl: emulator.baseUrl,
        resultsDir: join(dir, 'results'),
        jobs: [
          {
            name: 'metered',
            streams: [
              { alias: 'file', source: `{type: file, path: ${JSON.stringify(JFK_WAV)}, realtime: false}` },
              { alias: 'tone', source: '{type: tone, level_dbfs: -20}' },
              { alias: 'phone', source: `{type: rtp, listen: "127.0.0.1:${rtpPort}"}` },
            ],
          },
        ],
        service: { metrics_listen: '127.0.0.1:0' },
      }),
    );
    run = startCli(['run', '--config', config], { TEST_API_KEY: emulator.apiKey });
    baseUrl = `http://127.0.0.1:${await metricsPort(run)}`;
  });

  after(async () => {
    if (run.child.exitCode === null) {
      run.child.kill('SIGTERM');
      await withTimeout(run.exited, 20_000, 'the agent to exit');
    }
    await emulator.close();
  });

  it('counts exact bytes of a file', async () => {
    await waitForStatus(
      baseUrl,
      (snapshot) => snapshot.jobs[0]?.aliases.find((alias) => alias.alias === 'file')?.sentBytes === 352_000,
      30_000,
      'the whole file to be sent',
    );
    const { status, body } = await fetchText(`${baseUrl}/metrics`);
    const labels = { job: 'metered', alias: 'file' };

    assert.equal(status, 200);
    // 11.0 s of 16 kHz mono s16le, in 100 ms frames of 3200 bytes.
    assert.equal(metricValue(body, 'modulate_agent_stream_sent_bytes_total', labels), 352_000);
    assert.equal(metricValue(body, 'modulate_agent_stream_sent_seconds_total', labels), 11);
    assert.equal(metricValue(body, 'modulate_agent_stream_sent_frames_total', labels), 110);
    assert.equal(metricValue(body, 'modulate_agent_stream_dropped_frames_total', labels), 0);
    assert.equal(metricValue(body, 'modulate_agent_stream_dropped_seconds_total', labels), 0);
    assert.equal(metricValue(body, 'modulate_agent_stream_buffered_bytes', labels), 0);
    assert.equal(metricValue(body, 'modulate_agent_stream_reconnects_total', labels), 0);
    assert.equal(metricValue(body, 'modulate_agent_stream_state', { ...labels, state: 'open' }), 1);
    assert.equal(metricValue(body, 'modulate_agent_stream_state', { ...labels, state: 'reconnecting' }), 0);
    assert.equal(metricValue(body, 'modulate_agent_job_status', { job: 'metered', status: 'active' }), 1);
    assert.equal(metricValue(body, 'modulate_agent_ready', {}), 1);
    assert.ok((metricValue(body, 'process_cpu_user_seconds_total', {}) ?? -1) >= 0, 'process metrics are missing');
    assert.ok(metricValue(body, 'nodejs_eventloop_lag_seconds', {}) !== undefined, 'event loop metrics are missing');
  });

  it('measures the tone level', async () => {
    const snapshot = await waitForStatus(
      baseUrl,
      (current) => (current.jobs[0]?.aliases.find((alias) => alias.alias === 'tone')?.sentFrames ?? 0) > 0,
      20_000,
      'tone frames',
    );
    const tone = snapshot.jobs[0]?.aliases.find((alias) => alias.alias === 'tone');
    // A sine with -20 dBFS peak has an RMS 3.01 dB lower (1/sqrt(2)); the resampler and rounding move it a little.
    assert.ok(Math.abs((tone?.levelPeakDbfs ?? 0) + 20) < 0.5, `peak ${tone?.levelPeakDbfs} dBFS, expected about -20`);
    assert.ok(Math.abs((tone?.levelRmsDbfs ?? 0) + 23.01) < 0.5, `RMS ${tone?.levelRmsDbfs} dBFS, expected about -23.01`);
  });

  it('counts RTP packets per SSRC', async () => {
    const sender = createSocket('udp4');
    const ssrc = 0x5eed;
    for (let sequence = 1; sequence <= 20; sequence += 1) {
      const packet = buildRtpPacket({ payloadType: 0, sequenceNumber: sequence, timestamp: sequence * 160, ssrc });
      await new Promise<void>((resolve, reject) => sender.send(packet, rtpPort, '127.0.0.1', (error) => (error ? reject(error) : resolve())));
    }
    sender.send(Buffer.from('not rtp'), rtpPort, '127.0.0.1');
    await waitForStatus(
      baseUrl,
      (snapshot) => snapshot.jobs[0]?.rtpSources[0]?.counters.streams[0]?.received === 20 && snapshot.jobs[0]?.rtpSources[0]?.counters.source.malformed === 1,
      20_000,
      '20 received RTP packets and one malformed datagram',
    );
    sender.close();
    const { body } = await fetchText(`${baseUrl}/metrics`);
    const listen = `127.0.0.1:${rtpPort}`;

    assert.equal(metricValue(body, 'modulate_agent_rtp_datagrams_total', { job: 'metered', listen }), 21);
    assert.equal(metricValue(body, 'modulate_agent_rtp_dropped_datagrams_total', { job: 'metered', listen, reason: 'malformed' }), 1);
    assert.equal(metricValue(body, 'modulate_agent_rtp_streams', { job: 'metered', listen }), 1);
    const packetLabels = { job: 'metered', alias: 'phone', ssrc: String(ssrc) };
    assert.equal(metricValue(body, 'modulate_agent_rtp_packets_total', { ...packetLabels, outcome: 'received' }), 20);
    assert.equal(metricValue(body, 'modulate_agent_rtp_packets_total', { ...packetLabels, outcome: 'lost' }), 0);
  });

  it('answers health and readiness', async () => {
    assert.deepEqual(await fetchText(`${baseUrl}/healthz`), { status: 200, body: 'ok\n' });
    assert.deepEqual(await fetchText(`${baseUrl}/readyz`), { status: 200, body: 'ready\n' });
    const missing = await fetchText(`${baseUrl}/nothing`);
    assert.equal(missing.status, 404);
    assert.match(missing.body, /\/metrics/);
  });

  it('status prints one line per alias', async () => {
    const status = startCli(['status', '--url', baseUrl]);
    const { code } = await withTimeout(status.exited, 20_000, 'the status command');
    const lines = status.stdout().split('\n');
    const fileLine = lines.find((line) => /\bfile\b/.test(line) && line.includes('metered'));

    assert.equal(code, 0, `status exited with ${code}; stderr: ${status.stderr()}`);
    assert.match(lines[0] ?? '', /^modulate-agent \S+ {2}pid \d+ {2}running {2}ready/);
    assert.ok(fileLine, `no line for alias file in:\n${status.stdout()}`);
    assert.match(fileLine, /\bopen\b/);
    assert.match(fileLine, /\[[#-]{12}\] -\d+ dBFS/);
    assert.match(fileLine, /\b11\.0 s\b/);
    assert.ok(lines.some((line) => /\btone\b/.test(line)), 'no line for alias tone');
    assert.ok(lines.some((line) => line.startsWith(`rtp metered phone on 127.0.0.1:${rtpPort}: 21 datagrams`)), `no RTP line in:\n${status.stdout()}`);
  });

  it('status --watch redraws until SIGINT', async () => {
    const watch = startCli(['status', '--url', baseUrl, '--watch', '--interval-ms', '200']);
    await withTimeout(
      new Promise<void>((resolve) => {
        const check = (): void => {
          if ((watch.stdout().match(/^modulate-agent /gm) ?? []).length >= 3) {
            watch.child.stdout?.off('data', check);
            resolve();
          }
        };
        watch.child.stdout?.on('data', check);
        check();
      }),
      20_000,
      'three status screens',
    );
    watch.child.kill('SIGINT');
    const { code } = await withTimeout(watch.exited, 10_000, 'status --watch to exit');

    assert.equal(code, 0, watch.stderr());
  });

  it('status reports an unreachable agent', async () => {
    const url = `http://127.0.0.1:${await closedTcpPort()}`;
    const status = startCli(['status', '--url', url]);
    const { code } = await withTimeout(status.exited, 20_000, 'the status command');

    assert.equal(code, 1);
    assert.ok(status.stderr().includes(`cannot reach the agent at ${url} (ECONNREFUSED)`), status.stderr());
  });
});

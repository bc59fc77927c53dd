/**
 * One RTP port with alias_template through a running agent: each SSRC gets
 * its own alias in the emulator, an idle SSRC's alias ends with
 * end-of-stream while the others go on, and max_streams caps a flood of
 * new SSRCs.
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { Emulator } from '../../src/emulator/emulator.ts';
import { JFK_WAV, ffmpeg, makeTempDir, parseLogLines, startCli, withTimeout, writeConfig, type CliRun } from '../helpers/tools.ts';
import { buildRtpPacket } from '../helpers/rtp-test-kit.ts';

const SSRC_A = 1111;
const SSRC_B = 3000000000;
const PACKETS_A = 50;
const PACKETS_B = 150;
const IDLE_END_MS = 1000;
const MAX_STREAMS = 4;

function configYaml(baseUrl: string, resultsDir: string): string {
  return `api:
  base_url: ${baseUrl}
  account_id: emulator
  api_key: \${TEST_API_KEY}
jobs:
  - name: rooms
    analyses: [transcription]
    streams:
      - alias_template: "room7-{ssrc}"
        source: {type: rtp, listen: "127.0.0.1:0", idle_end_ms: ${IDLE_END_MS}, max_streams: ${MAX_STREAMS}}
        output: {format: mulaw, sample_rate_hz: 8000, frame_ms: 20}
service:
  results_dir: ${JSON.stringify(resultsDir)}
  shutdown_timeout_ms: 15000
  stats_interval_ms: 500
`;
}

async function listeningPort(run: CliRun): Promise<number> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const line = parseLogLines(run.stdout()).find((entry) => entry['msg'] === 'rtp source listening');
    if (line !== undefined) {
      return line['port'] as number;
    }
    if (Date.now() > deadline || run.child.exitCode !== null) {
      throw new Error(`agent did not listen; stdout: ${run.stdout()} stderr: ${run.stderr()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function pcmuPacket(ssrc: number, index: number, payload: Buffer): Buffer {
  return buildRtpPacket({ ssrc, payloadType: 0, sequenceNumber: 500 + index, timestamp: 90000 + index * 160, payload });
}

describe('rtp demux through the agent', () => {
  let emulator: Emulator;
  let run: CliRun;
  let socket: Socket;
  let port: number;
  let mulaw: Buffer;

  before(async () => {
    emulator = await Emulator.start({ port: 0 });
    const dir = await makeTempDir();
    mulaw = await ffmpeg(['-i', JFK_WAV, '-ar', '8000', '-f', 'mulaw', '-']);
    const config = await writeConfig(dir, configYaml(emulator.baseUrl, join(dir, 'results')));
    run = startCli(['run', '--config', config], { TEST_API_KEY: emulator.apiKey });
    port = await listeningPort(run);
    socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  });

  after(async () => {
    socket?.close();
    run?.child.kill('SIGKILL');
    await emulator?.close();
  });

  const send = (datagram: Buffer): Promise<void> =>
    new Promise((resolve, reject) => socket.send(datagram, port, '127.0.0.1', (error) => (error ? reject(error) : resolve())));

  it('streams each ssrc to its alias', async () => {
    const contentA = mulaw.subarray(0, PACKETS_A * 160);
    const contentB = mulaw.subarray(8000, 8000 + PACKETS_B * 160);
    const firstEvent = emulator.events.length;
    const endOfA = emulator.waitFor(
      (event) => event.type === 'end_of_stream' && event.alias === `room7-${SSRC_A}`,
      20_000,
      { fromIndex: firstEvent },
    );

    // Both senders every 20 ms; A stops after 1 s while B goes on for 3 s.
    let endOfAWhileBSending = false;
    void endOfA.then(() => {
      endOfAWhileBSending = sentB < PACKETS_B;
    });
    let sentB = 0;
    for (let index = 0; index < PACKETS_B; index++) {
      if (index < PACKETS_A) {
        await send(pcmuPacket(SSRC_A, index, contentA.subarray(index * 160, (index + 1) * 160)));
      }
      await send(pcmuPacket(SSRC_B, index, contentB.subarray(index * 160, (index + 1) * 160)));
      sentB += 1;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await withTimeout(endOfA, 10_000, `end-of-stream of room7-${SSRC_A}`);
    assert.equal(endOfAWhileBSending, true, 'the idle alias did not end while the other SSRC was still sending');

    // A flood of new SSRCs: MAX_STREAMS - 1 get streams next to B, the rest are dropped.
    for (let ssrc = 10; ssrc < 20; ssrc++) {
      await send(pcmuPacket(ssrc, 0, mulaw.subarray(0, 160)));
      await send(pcmuPacket(ssrc, 1, mulaw.subarray(160, 320)));
    }
    const dropLine = async (): Promise<Record<string, unknown> | undefined> =>
      parseLogLines(run.stdout()).find((line) => line['msg'] === 'rtp packets dropped' && Number(line['overMaxStreams']) > 0);
    const deadline = Date.now() + 5000;
    while ((await dropLine()) === undefined) {
      assert.ok(Date.now() < deadline, `no drop line; stdout: ${run.stdout()}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal((await dropLine())?.['overMaxStreams'], (10 - (MAX_STREAMS - 1)) * 2);

    run.child.kill('SIGTERM');
    const { code } = await withTimeout(run.exited, 20_000, 'the agent to exit');
    assert.equal(code, 0, `agent exited with ${code}; stderr: ${run.stderr()}`);

    const jobId = emulator.events.find((event) => event.type === 'job_created')?.jobId;
    assert.ok(jobId);
    const recordingA = emulator.getRecording(jobId, `room7-${SSRC_A}`);
    const recordingB = emulator.getRecording(jobId, `room7-${SSRC_B}`);
    assert.ok(recordingA, `no alias for SSRC ${SSRC_A}`);
    assert.ok(recordingB, `no alias for SSRC ${SSRC_B}`);
    assert.ok(recordingA.audio.equals(contentA), 'room A differs from what SSRC A sent');
    assert.ok(recordingB.audio.equals(contentB), 'room B differs from what SSRC B sent');
    assert.equal(recordingA.endOfStream, true);
    assert.equal(recordingB.endOfStream, true);

    const streamOpens = new Set(
      emulator.events.filter((event) => event.type === 'stream_open' && event.jobId === jobId).map((event) => event.alias),
    );
    assert.equal(streamOpens.size, 2 + (MAX_STREAMS - 1), `aliases opened: ${[...streamOpens].join(', ')}`);
    assert.equal(
      parseLogLines(run.stdout()).filter((line) => String(line['msg']).startsWith('rtp source has max_streams')).length,
      1,
      'the cap is warned once per interval',
    );
  });
});

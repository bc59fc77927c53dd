import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { Emulator } from '../../src/emulator/emulator.ts';
import type { EmulatorEvent } from '../../src/emulator/emulator-event-log.ts';
import { JFK_WAV, decodeToS16le, ffmpeg, makeTempDir, parseLogLines, startCli, withTimeout, writeConfig } from '../helpers/tools.ts';

function configYaml(options: {
  baseUrl: string;
  resultsDir: string;
  streams: Array<{ alias: string; path: string; realtime: boolean }>;
}): string {
  const streams = options.streams
    .map(
      (stream) => `      - alias: ${stream.alias}
        source: {type: file, path: ${JSON.stringify(stream.path)}, realtime: ${stream.realtime}}`,
    )
    .join('\n');
  return `api:
  base_url: ${options.baseUrl}
  account_id: emulator
  api_key: \${TEST_API_KEY}
jobs:
  - name: replay
    analyses: [transcription, toxicity]
    streams:
${streams}
service:
  results_dir: ${JSON.stringify(options.resultsDir)}
  shutdown_timeout_ms: 9000
`;
}

function eventIndex(events: EmulatorEvent[], type: EmulatorEvent['type'], alias?: string): number {
  return events.findIndex((event) => event.type === type && (alias === undefined || event.alias === alias));
}

describe('end to end through the emulator', () => {
  let emulator: Emulator;
  let dir: string;

  before(async () => {
    emulator = await Emulator.start({ port: 0 });
    dir = await makeTempDir();
  });

  after(async () => {
    await emulator.close();
  });

  it('streams a WAV byte-identical on two aliases', async () => {
    const resultsDir = join(dir, 'results-identical');
    const config = await writeConfig(
      dir,
      configYaml({
        baseUrl: emulator.baseUrl,
        resultsDir,
        streams: [
          { alias: 'left', path: JFK_WAV, realtime: false },
          { alias: 'right', path: JFK_WAV, realtime: false },
        ],
      }),
      'identical.yaml',
    );
    const firstEvent = emulator.events.length;
    const run = startCli(['run', '--config', config], { TEST_API_KEY: emulator.apiKey });
    const { code } = await withTimeout(run.exited, 60_000, 'the agent to exit');
    assert.equal(code, 0, `agent exited with ${code}; stderr: ${run.stderr()}`);

    const created = emulator.events.slice(firstEvent).find((event) => event.type === 'job_created');
    assert.ok(created?.jobId, 'no job was created');
    const jobId = created.jobId;
    const expectedPcm = await decodeToS16le(JFK_WAV);
    assert.equal(expectedPcm.length, 352_000, 'ffmpeg decode of the recording has an unexpected length');

    for (const alias of ['left', 'right']) {
      const recording = emulator.getRecording(jobId, alias);
      assert.ok(recording, `no recording for alias ${alias}`);
      assert.equal(recording.audio.length, expectedPcm.length, `alias ${alias}: byte count differs`);
      assert.ok(recording.audio.equals(expectedPcm), `alias ${alias}: audio differs from the source PCM`);
      assert.equal(recording.endOfStream, true, `alias ${alias}: end-of-stream missing`);
      assert.equal(recording.connections, 1, `alias ${alias}: expected one connection`);
    }

    const events = emulator.events.slice(firstEvent).filter((event) => event.jobId === jobId);
    const finalizeRequested = eventIndex(events, 'finalize_requested');
    const finalized = eventIndex(events, 'job_finalized');
    assert.ok(finalizeRequested >= 0, 'PATCH finalize was not requested');
    assert.ok(finalized > finalizeRequested, 'job was not finalized after the PATCH');
    for (const alias of ['left', 'right']) {
      const endOfStream = eventIndex(events, 'end_of_stream', alias);
      const done = eventIndex(events, 'done_sent', alias);
      const closed = events.findIndex(
        (event) => event.type === 'stream_closed' && event.alias === alias && event.code === 1000,
      );
      assert.ok(endOfStream >= 0, `alias ${alias}: no end-of-stream`);
      assert.ok(done > endOfStream, `alias ${alias}: done not after end-of-stream`);
      assert.ok(closed > done, `alias ${alias}: close 1000 not after done`);
      assert.ok(finalizeRequested > done, `alias ${alias}: PATCH came before done`);
    }
    // The emulator may see the PATCH before its side of the socket has closed, so the agent's own log gives
    // the order: each stream closed with 1000 before the agent sent the PATCH.
    const logLines = parseLogLines(run.stdout());
    const patchLine = logLines.findIndex((line) => line.msg === 'requesting job finalization');
    assert.ok(patchLine >= 0, 'the agent logged no finalization request');
    for (const alias of ['left', 'right']) {
      const closedLine = logLines.findIndex((line) => line.msg === 'stream closed' && line.alias === alias && line.closeCode === 1000);
      assert.ok(closedLine >= 0, `alias ${alias}: the agent logged no close 1000`);
      assert.ok(closedLine < patchLine, `alias ${alias}: PATCH came before the stream closed`);
    }

    const resultsFile = join(resultsDir, `${jobId}.jsonl`);
    const lines = (await readFile(resultsFile, 'utf8')).trim().split('\n');
    const results = lines.map((line) => JSON.parse(line) as { alias: string; job_id: string });
    assert.ok(results.some((result) => result.alias === 'left'), 'no results for alias left');
    assert.ok(results.some((result) => result.alias === 'right'), 'no results for alias right');
    assert.ok(results.every((result) => result.job_id === jobId), 'results carry another job ID');
  });

  it('converts 48 kHz stereo to 16 kHz mono', async () => {
    const stereo = join(dir, 'jfk-48k-stereo.wav');
    await ffmpeg(['-y', '-i', JFK_WAV, '-ar', '48000', '-ac', '2', '-acodec', 'pcm_s16le', stereo]);
    const config = await writeConfig(
      dir,
      configYaml({
        baseUrl: emulator.baseUrl,
        resultsDir: join(dir, 'results-stereo'),
        streams: [{ alias: 'stereo', path: stereo, realtime: false }],
      }),
      'stereo.yaml',
    );
    const firstEvent = emulator.events.length;
    const run = startCli(['run', '--config', config], { TEST_API_KEY: emulator.apiKey });
    const { code } = await withTimeout(run.exited, 60_000, 'the agent to exit');
    assert.equal(code, 0, `agent exited with ${code}; stderr: ${run.stderr()}`);

    const jobId = emulator.events.slice(firstEvent).find((event) => event.type === 'job_created')?.jobId;
    assert.ok(jobId);
    const recording = emulator.getRecording(jobId, 'stereo');
    assert.ok(recording);
    assert.equal(recording.format.audio_format, 's16le');
    assert.equal(recording.format.sample_rate, 16000);
    assert.equal(recording.format.num_channels, 1);
    // 11.0 s at 16 kHz mono s16le; one 100 ms frame is 3200 bytes.
    const expectedBytes = 352_000;
    const frameBytes = 3200;
    assert.ok(
      Math.abs(recording.audio.length - expectedBytes) <= frameBytes,
      `received ${recording.audio.length} bytes, expected ${expectedBytes} within one frame`,
    );
  });

  it('finalizes on SIGTERM mid-stream', async () => {
    const config = await writeConfig(
      dir,
      configYaml({
        baseUrl: emulator.baseUrl,
        resultsDir: join(dir, 'results-sigterm'),
        streams: [{ alias: 'live', path: JFK_WAV, realtime: true }],
      }),
      'sigterm.yaml',
    );
    const firstEvent = emulator.events.length;
    const run = startCli(['run', '--config', config], { TEST_API_KEY: emulator.apiKey });
    const open = await emulator.waitFor(
      (event) => event.type === 'stream_open' && event.alias === 'live',
      20_000,
      { fromIndex: firstEvent },
    );
    // Let a few frames of real-time audio arrive before the signal.
    await emulator.waitFor((event) => event.type === 'result_produced' && event.jobId === open.jobId, 10_000, {
      fromIndex: firstEvent,
    });
    const signalledAt = Date.now();
    run.child.kill('SIGTERM');
    const { code } = await withTimeout(run.exited, 10_000, 'the agent to exit after SIGTERM');
    assert.equal(code, 0, `agent exited with ${code}; stderr: ${run.stderr()}`);
    assert.ok(Date.now() - signalledAt < 10_000);

    const jobId = open.jobId;
    assert.ok(jobId);
    assert.equal(emulator.getJob(jobId)?.status, 'finalized');
    const recording = emulator.getRecording(jobId, 'live');
    assert.ok(recording);
    assert.equal(recording.endOfStream, true, 'end-of-stream missing after SIGTERM');
    assert.ok(recording.audio.length < 352_000, 'the whole file arrived; SIGTERM came too late to test anything');
    const expectedPcm = await decodeToS16le(JFK_WAV);
    assert.ok(
      recording.audio.equals(expectedPcm.subarray(0, recording.audio.length)),
      'audio received before SIGTERM is not a prefix of the source',
    );
  });
});

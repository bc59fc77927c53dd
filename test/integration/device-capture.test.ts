import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { Emulator } from '../../src/emulator/emulator.ts';
import {
  FAILING_DEVICE,
  MONO_DEVICE,
  QUAD_DEVICE,
  TEST_SAMPLE_RATE_HZ,
  createAlsaTestDevices,
  extractChannel,
  type AlsaTestDevices,
} from '../fixtures/alsa-test-devices.ts';
import { startCli, withTimeout, writeConfig, type CliRun } from '../helpers/tools.ts';

type LogLine = Record<string, unknown>;

/**
 * Config of one job streaming device sources at 16 kHz s16le mono, the
 * test devices' own format, so that no stage converts and the audio can be
 * compared byte for byte. The test devices deliver audio much faster than
 * real time, so the outage buffer is large enough to hold all of it.
 */
function configYaml(baseUrl: string, resultsDir: string, sources: Record<string, string>): string {
  const streams = Object.entries(sources)
    .map(([alias, source]) => `      - alias: ${alias}\n        source: ${source}`)
    .join('\n');
  return `api:
  base_url: ${baseUrl}
  account_id: emulator
  api_key: \${TEST_API_KEY}
defaults:
  output: {format: s16le, sample_rate_hz: ${TEST_SAMPLE_RATE_HZ}, channels: 1, frame_ms: 100}
  delivery: {max_outage_ms: 600000}
jobs:
  - name: capture
    analyses: [transcription]
    streams:
${streams}
service:
  results_dir: ${JSON.stringify(resultsDir)}
  shutdown_timeout_ms: 15000
`;
}

/**
 * JSON log lines of a run. naudiodon prints plain lines on the same
 * standard output, and one of them can end without a newline before a log
 * line, so each line is read from its first `{"level":`.
 */
function logLines(run: CliRun): LogLine[] {
  return run
    .stdout()
    .split('\n')
    .flatMap((line) => {
      const start = line.indexOf('{"level":');
      if (start === -1) {
        return [];
      }
      try {
        return [JSON.parse(line.slice(start)) as LogLine];
      } catch {
        return [];
      }
    });
}

function withMessage(lines: LogLine[], message: string): LogLine[] {
  return lines.filter((line) => line['msg'] === message);
}

/** Resolves once `predicate` holds for the run's log lines; rejects after `timeoutMs` or when the run exits first. */
async function waitForLogs(run: CliRun, predicate: (lines: LogLine[]) => boolean, timeoutMs: number, what: string): Promise<LogLine[]> {
  const stdout = run.child.stdout;
  assert.ok(stdout, 'the run has no standard output pipe');
  const reached = new Promise<LogLine[]>((resolve, reject) => {
    const check = (): void => {
      const lines = logLines(run);
      if (predicate(lines)) {
        cleanup();
        resolve(lines);
      }
    };
    const onExit = (): void => {
      cleanup();
      reject(new Error(`the agent exited while waiting for ${what}; output:\n${run.stdout()}${run.stderr()}`));
    };
    const cleanup = (): void => {
      stdout.off('data', check);
      run.child.off('exit', onExit);
    };
    stdout.on('data', check);
    run.child.once('exit', onExit);
    check();
  });
  return withTimeout(reached, timeoutMs, what);
}

/** Resolves once every alias has received at least `byteLength` bytes. */
async function waitForAudio(emulator: Emulator, aliases: string[], byteLength: number, timeoutMs: number): Promise<string> {
  const received = (jobId: string): boolean =>
    aliases.every((alias) => (emulator.getRecording(jobId, alias)?.receivedBytes ?? 0) >= byteLength);
  const event = await emulator.waitFor(
    (candidate) => candidate.type === 'result_produced' && candidate.jobId !== undefined && received(candidate.jobId),
    timeoutMs,
    { fromIndex: emulator.events.length },
  );
  return event.jobId!;
}

async function stopAgent(run: CliRun): Promise<number | null> {
  run.child.kill('SIGINT');
  const { code } = await withTimeout(run.exited, 30_000, 'the agent to exit after SIGINT');
  return code;
}

/** Index of the first byte where `actual` and `expected` differ, or -1 when `actual` starts with `expected`. */
function firstDifference(actual: Buffer, expected: Buffer): number {
  const length = Math.min(actual.length, expected.length);
  for (let index = 0; index < length; index++) {
    if (actual[index] !== expected[index]) {
      return index;
    }
  }
  return actual.length < expected.length ? length : -1;
}

describe('device source through the emulator', () => {
  let alsa: AlsaTestDevices;
  let emulator: Emulator;

  before(async () => {
    alsa = await createAlsaTestDevices();
    emulator = await Emulator.start({ port: 0 });
  });

  after(async () => {
    await emulator.close();
    await rm(alsa.home, { recursive: true, force: true });
  });

  it('one channel arrives byte-identical', async () => {
    const resultsDir = join(alsa.home, 'results-mono');
    // The device is named by part of its name.
    const config = await writeConfig(
      alsa.home,
      configYaml(emulator.baseUrl, resultsDir, { speech: '{type: device, device: test_mono, channels: [1]}' }),
      'mono.yaml',
    );
    const run = startCli(['run', '--config', config], { ...alsa.env, TEST_API_KEY: emulator.apiKey });
    const jobId = await waitForAudio(emulator, ['speech'], alsa.monoPcm.length, 60_000);
    const code = await stopAgent(run);
    assert.equal(code, 0, `agent exited with ${code}; output:\n${run.stdout()}${run.stderr()}`);

    const started = withMessage(logLines(run), 'device capture started');
    assert.equal(started.length, 1, 'the device should be opened once');
    assert.equal(started[0]?.['device'], MONO_DEVICE);
    assert.equal(started[0]?.['sampleRateHz'], TEST_SAMPLE_RATE_HZ);
    assert.equal(started[0]?.['channels'], 1);
    assert.equal(started[0]?.['sampleFormat'], 'int16');

    // The device captures 16-bit, 16 kHz mono and the stream sends the same
    // format, so PortAudio converts nothing and the converter maps k / 32768
    // back to k: every sample must come through unchanged and in order.
    const recording = emulator.getRecording(jobId, 'speech');
    assert.ok(recording, 'no recording for alias speech');
    assert.equal(recording.connections, 1);
    const difference = firstDifference(recording.audio, alsa.monoPcm);
    assert.equal(difference, -1, `received audio differs from the source PCM at byte ${difference}`);
  });

  it('four channels split into five aliases', async () => {
    const resultsDir = join(alsa.home, 'results-quad');
    const channelAliases = ['speech', 'tone440', 'noise', 'tone1000'];
    // The group alias comes first, so the shared capture opens with all four
    // channels at once. Otherwise a plugin device is opened with the channels
    // of the streams known so far, and reopened when a stream needs more.
    const sources: Record<string, string> = { mix: `{type: device, device: ${QUAD_DEVICE}, channels: [1, 2, 3, 4]}` };
    channelAliases.forEach((alias, index) => {
      sources[alias] = `{type: device, device: ${QUAD_DEVICE}, channels: [${index + 1}]}`;
    });
    const config = await writeConfig(alsa.home, configYaml(emulator.baseUrl, resultsDir, sources), 'quad.yaml');
    const run = startCli(['run', '--config', config], { ...alsa.env, TEST_API_KEY: emulator.apiKey });
    const channelBytes = alsa.quadPcm.length / 4;
    const jobId = await waitForAudio(emulator, ['mix', ...channelAliases], channelBytes, 60_000);
    const code = await stopAgent(run);
    assert.equal(code, 0, `agent exited with ${code}; output:\n${run.stdout()}${run.stderr()}`);

    const lines = logLines(run);
    const started = withMessage(lines, 'device capture started');
    assert.equal(started.length, 1, 'five streams on one device should share one capture');
    assert.equal(started[0]?.['channels'], 4);
    assert.equal(withMessage(lines, 'input device reopened').length, 0, 'the capture should not reopen');
    assert.equal(withMessage(lines, 'device source opened').length, 5);

    // Every stream of the job joins the capture before its first block
    // arrives, so each alias starts at the first frame of the file.
    const channels = channelAliases.map((_, index) => extractChannel(alsa.quadPcm, 4, index));
    channelAliases.forEach((alias, index) => {
      const recording = emulator.getRecording(jobId, alias);
      assert.ok(recording, `no recording for alias ${alias}`);
      const difference = firstDifference(recording.audio, channels[index]!);
      assert.equal(difference, -1, `alias ${alias} differs from channel ${index + 1} at byte ${difference}`);
      for (const [other, otherPcm] of channels.entries()) {
        if (other !== index) {
          assert.notEqual(firstDifference(recording.audio, otherPcm), -1, `alias ${alias} carries channel ${other + 1}`);
        }
      }
    });

    // The group is the average of its channels. The mixer averages floats
    // and rounds once, so the result may differ from this integer average by
    // one step.
    const mix = emulator.getRecording(jobId, 'mix');
    assert.ok(mix, 'no recording for alias mix');
    const frames = channelBytes / 2;
    let maxErrorSteps = 0;
    for (let frame = 0; frame < frames; frame++) {
      const sum = channels.reduce((total, pcm) => total + pcm.readInt16LE(frame * 2), 0);
      const error = Math.abs(mix.audio.readInt16LE(frame * 2) - sum / 4);
      maxErrorSteps = Math.max(maxErrorSteps, error);
    }
    assert.ok(maxErrorSteps <= 1, `mix differs from the average of the channels by up to ${maxErrorSteps} steps`);
  });

  it('stream taking more channels reopens capture', async () => {
    const resultsDir = join(alsa.home, 'results-grow');
    const config = await writeConfig(
      alsa.home,
      configYaml(emulator.baseUrl, resultsDir, {
        first: `{type: device, device: ${QUAD_DEVICE}, channels: [1]}`,
        second: `{type: device, device: ${QUAD_DEVICE}, channels: [4]}`,
      }),
      'grow.yaml',
    );
    const run = startCli(['run', '--config', config], { ...alsa.env, TEST_API_KEY: emulator.apiKey });
    const channelBytes = alsa.quadPcm.length / 4;
    const jobId = await waitForAudio(emulator, ['first', 'second'], channelBytes, 60_000);
    const code = await stopAgent(run);
    assert.equal(code, 0, `agent exited with ${code}; output:\n${run.stdout()}${run.stderr()}`);

    // The test device reports 128 channels, like every ALSA plugin device,
    // so the capture opens with the one channel the first stream takes and
    // reopens with four when the second stream joins. (Four, because the
    // test device loses data whenever ALSA converts its channel count.)
    const lines = logLines(run);
    const started = withMessage(lines, 'device capture started');
    assert.equal(started.length, 1);
    assert.equal(started[0]?.['channels'], 1);
    const reopened = withMessage(lines, 'input device reopened');
    assert.equal(reopened.length, 1);
    assert.equal(reopened[0]?.['channels'], 4);

    // The second stream joined before the first block arrived, and each
    // open starts the file again, so both aliases start at its first frame.
    for (const [index, alias] of [[0, 'first'], [3, 'second']] as const) {
      const recording = emulator.getRecording(jobId, alias);
      assert.ok(recording, `no recording for alias ${alias}`);
      const difference = firstDifference(recording.audio, extractChannel(alsa.quadPcm, 4, index));
      assert.equal(difference, -1, `alias ${alias} differs from channel ${index + 1} at byte ${difference}`);
    }
  });

  it('failed device reopens while the stream stays open', async () => {
    const resultsDir = join(alsa.home, 'results-failing');
    const config = await writeConfig(
      alsa.home,
      configYaml(emulator.baseUrl, resultsDir, { speech: `{type: device, device: ${FAILING_DEVICE}, channels: [1]}` }),
      'failing.yaml',
    );
    const run = startCli(['run', '--config', config], { ...alsa.env, TEST_API_KEY: emulator.apiKey });
    try {
      // The device stops delivering after its first buffer; the capture
      // notices the silence and reopens it.
      await waitForLogs(run, (lines) => withMessage(lines, 'input device reopened').length >= 1, 60_000, 'a first reopen');

      // Then the device disappears from the sound system: reopening fails
      // until it is back, and the capture finds it again by name.
      await alsa.writeAsoundrc([MONO_DEVICE, QUAD_DEVICE]);
      await waitForLogs(
        run,
        (lines) =>
          withMessage(lines, 'reopening the input device failed; retrying').some((line) =>
            String((line['err'] as { message?: unknown } | undefined)?.message).includes(`input device "${FAILING_DEVICE}" not found`),
          ),
        60_000,
        'a failed reopen of the missing device',
      );
      const reopensBefore = withMessage(logLines(run), 'input device reopened').length;
      await alsa.writeAsoundrc([MONO_DEVICE, QUAD_DEVICE, FAILING_DEVICE]);
      await waitForLogs(
        run,
        (lines) => withMessage(lines, 'input device reopened').length > reopensBefore,
        60_000,
        'a reopen after the device came back',
      );
    } finally {
      await alsa.writeAsoundrc([MONO_DEVICE, QUAD_DEVICE, FAILING_DEVICE]);
    }
    const code = await stopAgent(run);
    assert.equal(code, 0, `agent exited with ${code}; output:\n${run.stdout()}${run.stderr()}`);

    const lines = logLines(run);
    const failures = withMessage(lines, 'device capture failed; reopening the device');
    assert.ok(failures.length >= 2, `expected at least two failures, got ${failures.length}`);
    assert.match(String(failures[0]?.['reason']), /^no audio for \d+ ms$/);
    const reopens = withMessage(lines, 'input device reopened');
    for (const reopen of reopens) {
      assert.ok((reopen['outageMs'] as number) > 0, `reopen without an outage: ${JSON.stringify(reopen)}`);
    }
    const closed = withMessage(lines, 'device capture closed');
    assert.equal(closed.length, 1);
    assert.equal(closed[0]?.['reopens'], reopens.length);
    assert.ok((closed[0]?.['outageMs'] as number) > 0);

    // The alias kept one connection through every reopen. Each open starts
    // the file again and delivers whole 20 ms blocks until the device fails,
    // so the audio is a run of blocks from the start of the recording per
    // open, and each block is the next one of its run or the first again.
    const jobId = emulator.listJobIds().at(-1);
    assert.ok(jobId);
    const recording = emulator.getRecording(jobId, 'speech');
    assert.ok(recording, 'no recording for alias speech');
    assert.equal(recording.connections, 1);
    const blockBytes = (TEST_SAMPLE_RATE_HZ / 50) * 2;
    assert.ok(recording.audio.length > 0, 'no audio arrived');
    assert.equal(recording.audio.length % blockBytes, 0, `${recording.audio.length} bytes are not whole 20 ms blocks`);
    const sourceBlock = (index: number): Buffer => alsa.monoPcm.subarray(index * blockBytes, (index + 1) * blockBytes);
    let runs = 0;
    let nextIndex = 0;
    for (let offset = 0; offset < recording.audio.length; offset += blockBytes) {
      const block = recording.audio.subarray(offset, offset + blockBytes);
      if (nextIndex > 0 && block.equals(sourceBlock(nextIndex))) {
        nextIndex += 1;
        continue;
      }
      assert.ok(block.equals(sourceBlock(0)), `block at byte ${offset} neither continues the recording nor starts it again`);
      runs += 1;
      nextIndex = 1;
    }
    assert.ok(runs >= 2, `expected audio from at least two opens, got ${runs}`);
    assert.ok(runs <= reopens.length + 1, `${runs} runs of audio from ${reopens.length + 1} opens`);
  });
});

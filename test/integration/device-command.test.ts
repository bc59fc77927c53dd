import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { Emulator } from '../../src/emulator/emulator.ts';
import { NAUDIODON_MODULE_ENV } from '../../src/sources/device/naudiodon-loader.ts';
import {
  ALL_TEST_DEVICES,
  MONO_DEVICE,
  QUAD_DEVICE,
  TEST_SAMPLE_RATE_HZ,
  createAlsaTestDevices,
  type AlsaTestDevices,
} from '../fixtures/alsa-test-devices.ts';
import { JFK_WAV, parseLogLines, startCli, withTimeout, writeConfig } from '../helpers/tools.ts';

/** Exit code of `devices` when naudiodon is missing (EX_UNAVAILABLE). */
const EXIT_UNAVAILABLE = 69;

/** Config with one stream per source, written as YAML flow mappings. */
function configYaml(baseUrl: string, resultsDir: string, sources: Record<string, string>): string {
  const streams = Object.entries(sources)
    .map(([alias, source]) => `      - alias: ${alias}\n        source: ${source}`)
    .join('\n');
  return `api:
  base_url: ${baseUrl}
  account_id: emulator
  api_key: \${TEST_API_KEY}
jobs:
  - name: devices
    analyses: [transcription]
    streams:
${streams}
service:
  results_dir: ${JSON.stringify(resultsDir)}
  shutdown_timeout_ms: 9000
`;
}

/** Text of every `err.message` in the agent's JSON log lines. */
function loggedErrorMessages(output: string): string[] {
  return parseLogLines(output).flatMap((line) => {
    const err = line['err'] as { message?: unknown } | undefined;
    return typeof err?.message === 'string' ? [err.message] : [];
  });
}

describe('devices command and device errors', () => {
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

  it('devices --json lists the test devices', async () => {
    const run = startCli(['devices', '--json'], alsa.env);
    const { code } = await withTimeout(run.exited, 30_000, 'devices --json to exit');
    assert.equal(code, 0, `devices --json exited with ${code}; stderr: ${run.stderr()}`);

    const devices = JSON.parse(run.stdout()) as Array<Record<string, unknown>>;
    for (const name of ALL_TEST_DEVICES) {
      const device = devices.find((candidate) => candidate['name'] === name);
      assert.ok(device, `${name} missing from ${run.stdout()}`);
      assert.equal(typeof device['index'], 'number');
      assert.equal(device['hostApi'], 'ALSA');
      // PortAudio reports up to 128 channels for ALSA plugin devices such as plug.
      assert.ok((device['maxInputChannels'] as number) >= 4, `maxInputChannels of ${name}: ${String(device['maxInputChannels'])}`);
      assert.equal(device['defaultSampleRateHz'], TEST_SAMPLE_RATE_HZ);
      assert.equal(typeof device['isDefaultInput'], 'boolean');
    }
  });

  it('devices prints a table', async () => {
    const run = startCli(['devices'], alsa.env);
    const { code } = await withTimeout(run.exited, 30_000, 'devices to exit');
    assert.equal(code, 0, `devices exited with ${code}; stderr: ${run.stderr()}`);

    const lines = run.stdout().split('\n');
    assert.match(lines[0] ?? '', /^INDEX\s+NAME\s+HOST API\s+INPUT CHANNELS\s+DEFAULT RATE \(Hz\)$/);
    const monoLine = lines.find((line) => line.includes(MONO_DEVICE));
    assert.ok(monoLine, `no line for ${MONO_DEVICE} in:\n${run.stdout()}`);
    assert.match(monoLine, /^\d+\*?\s+modulate_test_mono\s+ALSA\s+\d+\s+16000$/);
  });

  it('devices without naudiodon says how to install it', async () => {
    const run = startCli(['devices'], { ...alsa.env, [NAUDIODON_MODULE_ENV]: join(alsa.home, 'no-naudiodon') });
    const { code } = await withTimeout(run.exited, 30_000, 'devices to exit');
    assert.equal(code, EXIT_UNAVAILABLE, `stderr: ${run.stderr()}`);
    assert.match(run.stderr(), /naudiodon is not installed or failed to build \(Cannot find module/);
    assert.match(run.stderr(), /apt-get install -y build-essential python3/);
    assert.match(run.stderr(), /npm install naudiodon/);
    assert.match(run.stderr(), /npm install-scripts approve naudiodon segfault-handler/);
    assert.equal(run.stdout(), '');
  });

  it('device source without naudiodon fails clearly', async () => {
    const resultsDir = join(alsa.home, 'results-missing');
    const config = await writeConfig(
      alsa.home,
      configYaml(emulator.baseUrl, resultsDir, { speech: `{type: device, device: ${MONO_DEVICE}}` }),
      'missing-naudiodon.yaml',
    );
    const run = startCli(['run', '--config', config], {
      ...alsa.env,
      TEST_API_KEY: emulator.apiKey,
      [NAUDIODON_MODULE_ENV]: join(alsa.home, 'no-naudiodon'),
    });
    const { code } = await withTimeout(run.exited, 60_000, 'the agent to exit');
    assert.notEqual(code, 0, 'the agent should fail without naudiodon');
    const messages = loggedErrorMessages(run.stdout());
    assert.ok(
      messages.some((message) => message.includes('naudiodon is not installed or failed to build') && message.includes('npm install naudiodon')),
      `no install message among logged errors: ${JSON.stringify(messages)}`,
    );
  });

  it('file source runs without naudiodon', async () => {
    const resultsDir = join(alsa.home, 'results-file-only');
    const config = await writeConfig(
      alsa.home,
      configYaml(emulator.baseUrl, resultsDir, {
        replay: `{type: file, path: ${JSON.stringify(JFK_WAV)}, realtime: false}`,
      }),
      'file-without-naudiodon.yaml',
    );
    const run = startCli(['run', '--config', config], {
      ...alsa.env,
      TEST_API_KEY: emulator.apiKey,
      [NAUDIODON_MODULE_ENV]: join(alsa.home, 'no-naudiodon'),
    });
    const { code } = await withTimeout(run.exited, 60_000, 'the agent to exit');
    assert.equal(code, 0, `agent exited with ${code}; output: ${run.stdout()}${run.stderr()}`);
  });

  it('unknown device name is named in the error', async () => {
    const resultsDir = join(alsa.home, 'results-unknown');
    const config = await writeConfig(
      alsa.home,
      configYaml(emulator.baseUrl, resultsDir, { speech: '{type: device, device: no_such_device}' }),
      'unknown-device.yaml',
    );
    const run = startCli(['run', '--config', config], { ...alsa.env, TEST_API_KEY: emulator.apiKey });
    const { code } = await withTimeout(run.exited, 60_000, 'the agent to exit');
    assert.notEqual(code, 0, 'the agent should fail on an unknown device');
    const messages = loggedErrorMessages(run.stdout());
    const message = messages.find((candidate) => candidate.includes('no input device name contains "no_such_device"'));
    assert.ok(message, `no error naming the device among: ${JSON.stringify(messages)}`);
    assert.match(message, new RegExp(`"${MONO_DEVICE}"`), 'the error should list the input devices');
    assert.match(message, /modulate-agent devices/);
  });

  it('device index out of range is named in the error', async () => {
    const resultsDir = join(alsa.home, 'results-index');
    const config = await writeConfig(
      alsa.home,
      configYaml(emulator.baseUrl, resultsDir, { speech: '{type: device, device: 99}' }),
      'index-device.yaml',
    );
    const run = startCli(['run', '--config', config], { ...alsa.env, TEST_API_KEY: emulator.apiKey });
    const { code } = await withTimeout(run.exited, 60_000, 'the agent to exit');
    assert.notEqual(code, 0);
    const messages = loggedErrorMessages(run.stdout());
    assert.ok(
      messages.some((message) => message.includes('no sound device has index 99')),
      `no error naming index 99 among: ${JSON.stringify(messages)}`,
    );
  });

  it('device that cannot be opened is named in the error', async () => {
    const resultsDir = join(alsa.home, 'results-unopenable');
    // alsa-lib's plug converts rates from 4000 Hz up (SND_PCM_PLUGIN_RATE_MIN), so PortAudio cannot open 1000 Hz.
    const config = await writeConfig(
      alsa.home,
      configYaml(emulator.baseUrl, resultsDir, {
        speech: `{type: device, device: ${MONO_DEVICE}, channels: [1], sample_rate: 1000}`,
      }),
      'unopenable-device.yaml',
    );
    const run = startCli(['run', '--config', config], { ...alsa.env, TEST_API_KEY: emulator.apiKey });
    const { code } = await withTimeout(run.exited, 60_000, 'the agent to exit');
    assert.notEqual(code, 0);
    const messages = loggedErrorMessages(run.stdout());
    const message = messages.find((candidate) => candidate.includes(`cannot open input device "${MONO_DEVICE}"`));
    assert.ok(message, `no error naming the device among: ${JSON.stringify(messages)}`);
    assert.match(message, /at 1000 Hz with 1 channel\(s\)/);
    assert.match(message, /Invalid sample rate/, 'the error should carry PortAudio\'s reason');
    assert.match(message, /source\.sample_rate/);
  });

  it('channel beyond the device is named in the error', async () => {
    const resultsDir = join(alsa.home, 'results-channel');
    const config = await writeConfig(
      alsa.home,
      configYaml(emulator.baseUrl, resultsDir, { speech: `{type: device, device: ${QUAD_DEVICE}, channels: [200]}` }),
      'channel-device.yaml',
    );
    const run = startCli(['run', '--config', config], { ...alsa.env, TEST_API_KEY: emulator.apiKey });
    const { code } = await withTimeout(run.exited, 60_000, 'the agent to exit');
    assert.notEqual(code, 0);
    const messages = loggedErrorMessages(run.stdout());
    assert.ok(
      messages.some((message) => message.includes(`source.channels asks for channel 200, but input device "${QUAD_DEVICE}"`)),
      `no error naming the channel among: ${JSON.stringify(messages)}`,
    );
  });
});

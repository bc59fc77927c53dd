import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { Emulator } from '../../src/emulator/emulator.ts';
import { JFK_WAV, makeTempDir, parseLogLines, startCli, withTimeout, writeConfig } from '../helpers/tools.ts';

function configYaml(baseUrl: string, resultsDir: string, realtime: boolean): string {
  return `api:
  base_url: ${baseUrl}
  account_id: emulator
  api_key: \${TEST_API_KEY}
jobs:
  - name: creds
    analyses: [transcription]
    streams:
      - alias: mic
        source: {type: file, path: ${JSON.stringify(JFK_WAV)}, realtime: ${realtime}}
service:
  results_dir: ${JSON.stringify(resultsDir)}
  shutdown_timeout_ms: 5000
`;
}

describe('credential failures', () => {
  let emulator: Emulator;
  let dir: string;

  before(async () => {
    emulator = await Emulator.start({ port: 0 });
    dir = await makeTempDir();
  });

  after(async () => {
    await emulator.close();
  });

  it('wrong API key exits with 78', async () => {
    const config = await writeConfig(dir, configYaml(emulator.baseUrl, join(dir, 'results-key'), false), 'key.yaml');
    const run = startCli(['run', '--config', config], { TEST_API_KEY: 'not-the-key' });
    const { code } = await withTimeout(run.exited, 30_000, 'the agent to exit');
    assert.equal(code, 78, `exit code ${code}; stdout: ${run.stdout()}`);
    const lines = parseLogLines(run.stdout());
    const failure = lines.find((line) => typeof line['msg'] === 'string' && line['level'] === 50);
    assert.ok(failure, 'no error line was logged');
    assert.match(JSON.stringify(failure), /401/);
    assert.match(JSON.stringify(failure), /api\.account_id and the API key/);
    assert.doesNotMatch(run.stdout(), /not-the-key/, 'the API key appears in the logs');
  });

  it('close 4001 mid-stream exits with 78', async () => {
    const config = await writeConfig(dir, configYaml(emulator.baseUrl, join(dir, 'results-4001'), true), 'close.yaml');
    const firstEvent = emulator.events.length;
    const run = startCli(['run', '--config', config], { TEST_API_KEY: emulator.apiKey });
    const open = await emulator.waitFor((event) => event.type === 'stream_open' && event.alias === 'mic', 20_000, {
      fromIndex: firstEvent,
    });
    emulator.faults.closeStreams(4001, 'credentials revoked', { jobId: open.jobId, alias: 'mic' });
    const { code } = await withTimeout(run.exited, 20_000, 'the agent to exit');
    assert.equal(code, 78, `exit code ${code}; stdout: ${run.stdout()}`);
    const lines = parseLogLines(run.stdout());
    assert.ok(
      lines.some((line) => line['level'] === 60 && /credentials, permissions or quota/.test(String(line['msg']))),
      'no fatal line names the credential failure',
    );
    const opens = emulator.events
      .slice(firstEvent)
      .filter((event) => event.type === 'stream_open' && event.jobId === open.jobId);
    assert.equal(opens.length, 1, 'the stream reconnected after 4001');
  });
});

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { DEFAULT_STATUS_URL, resolveStatusUrl } from '../../src/cli/status-command.ts';
import { formatLevelMeter, formatStatus } from '../../src/cli/status-format.ts';
import type { AgentSnapshot, AliasSnapshot } from '../../src/service/agent-snapshot.ts';
import { isAliasReady } from '../../src/service/agent-snapshot.ts';
import { makeTempDir, writeConfig } from '../helpers/tools.ts';

function alias(overrides: Partial<AliasSnapshot>): AliasSnapshot {
  return {
    alias: 'mic',
    state: 'open',
    retrying: false,
    ready: true,
    outcome: 'running',
    sentBytes: 0,
    sentSeconds: 12.34,
    sentFrames: 0,
    resentBytes: 0,
    droppedBytes: 0,
    droppedFrames: 0,
    droppedSeconds: 0.5,
    lostBytes: 0,
    bufferedBytes: 0,
    bufferedSeconds: 1.25,
    reconnects: 2,
    results: 0,
    levelRmsDbfs: -30,
    levelPeakDbfs: -20,
    ...overrides,
  };
}

describe('status format', () => {
  it('level meter scales -60 to 0 dBFS', () => {
    assert.equal(formatLevelMeter(0), '[############] 0 dBFS');
    assert.equal(formatLevelMeter(-30), '[######------] -30 dBFS');
    assert.equal(formatLevelMeter(-75), '[------------] -75 dBFS');
    assert.equal(formatLevelMeter(-120), '[------------] silent');
  });

  it('one line per alias', () => {
    const snapshot: AgentSnapshot = {
      version: '1.2.3',
      pid: 99,
      phase: 'running',
      ready: false,
      startedAt: '2026-01-01T00:00:00.000Z',
      uptimeSeconds: 3725,
      configFile: undefined,
      jobs: [
        {
          name: 'desk',
          jobId: 'job_1',
          status: 'active',
          aliases: [alias({}), alias({ alias: 'phone', state: 'connecting', retrying: true })],
          rtpSources: [],
        },
      ],
    };
    const lines = formatStatus(snapshot, 'http://127.0.0.1:9464').split('\n');

    assert.equal(lines[0], 'modulate-agent 1.2.3  pid 99  running  NOT READY  up 1h02m  http://127.0.0.1:9464');
    assert.match(lines[2] ?? '', /^JOB +JOB ID +ALIAS +STATE +LEVEL +SENT +BUFFERED +DROPPED +RECONNECTS$/);
    assert.match(lines[3] ?? '', /^desk +job_1 +mic +open +\[######------\] -30 dBFS +12\.3 s +1\.3 s +0\.5 s +2$/);
    assert.match(lines[4] ?? '', /^desk +job_1 +phone +connecting \(retry\) /);
  });

  it('readiness of each state', () => {
    assert.equal(isAliasReady('open', false, 'running'), true);
    assert.equal(isAliasReady('reconnecting', true, 'running'), true);
    assert.equal(isAliasReady('connecting', true, 'running'), true);
    assert.equal(isAliasReady('connecting', false, 'running'), false);
    assert.equal(isAliasReady('idle', false, 'running'), false);
    assert.equal(isAliasReady('closed', false, 'done'), true);
    assert.equal(isAliasReady('closed', false, 'stop_stream'), false);
  });
});

describe('status URL', () => {
  it('url flag wins', async () => {
    assert.equal(await resolveStatusUrl({ url: 'http://127.0.0.1:1234/' }), 'http://127.0.0.1:1234');
  });

  it('default without config', async () => {
    assert.equal(await resolveStatusUrl({}), DEFAULT_STATUS_URL);
  });

  it('config listen address, wildcards on loopback', async () => {
    const dir = await makeTempDir('status-url-');
    const cases: Array<[string, string]> = [
      ['127.0.0.1:9464', 'http://127.0.0.1:9464'],
      ['0.0.0.0:9000', 'http://127.0.0.1:9000'],
      ['"[::]:9001"', 'http://[::1]:9001'],
      ['"[::1]:9002"', 'http://[::1]:9002'],
      ['${METRICS_LISTEN}', 'http://127.0.0.1:9003'],
    ];
    for (const [listen, expected] of cases) {
      // The API key file does not exist: status reads only service.metrics_listen.
      const config = await writeConfig(
        dir,
        `api:\n  account_id: a\n  api_key_file: ${join(dir, 'absent')}\njobs: []\nservice:\n  metrics_listen: ${listen}\n`,
      );
      assert.equal(await resolveStatusUrl({ config }, { METRICS_LISTEN: '127.0.0.1:9003' }), expected, listen);
    }
  });

  it('config without metrics_listen is an error', async () => {
    const dir = await makeTempDir('status-url-');
    const config = await writeConfig(dir, 'api:\n  account_id: a\n');

    await assert.rejects(resolveStatusUrl({ config }), /has no service\.metrics_listen/);
  });
});

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { Emulator } from '../../src/emulator/emulator.ts';
import { JobsClient } from '../../src/jobs/jobs-client.ts';
import type { Job } from '../../src/jobs/protocol.ts';
import { JFK_WAV, makeTempDir, startCli, withTimeout, writeConfig } from '../helpers/tools.ts';

describe('jobs and submit commands', () => {
  let emulator: Emulator;
  let dir: string;
  let env: NodeJS.ProcessEnv;

  /** Runs the CLI to its exit with the emulator's settings in the environment. */
  const cli = async (args: string[], extraEnv: NodeJS.ProcessEnv = {}) => {
    const run = startCli(args, { ...env, ...extraEnv });
    const { code } = await withTimeout(run.exited, 60_000, `modulate-agent ${args.join(' ')}`);
    return { code, stdout: run.stdout(), stderr: run.stderr() };
  };

  before(async () => {
    emulator = await Emulator.start({ port: 0 });
    dir = await makeTempDir('service-jobs-');
    env = {
      MODULATE_BASE_URL: emulator.baseUrl,
      MODULATE_ACCOUNT_ID: emulator.accountId,
      MODULATE_API_KEY: emulator.apiKey,
      MODULATE_API_KEY_FILE: '',
    };
  });

  after(async () => {
    await emulator.close();
  });

  it('submit runs a file job', async () => {
    const out = join(dir, 'submit.jsonl');
    const result = await cli(['submit', JFK_WAV, '--analysis', 'transcription', '--analysis', 'toxicity', '--out', out]);

    assert.equal(result.code, 0, result.stderr);
    const jobId = /job (job_\S+) created/.exec(result.stderr)?.[1];
    assert.ok(jobId, `no job ID in:\n${result.stderr}`);
    const job = emulator.getJob(jobId);
    assert.equal(job?.mode, 'file');
    assert.equal(job?.status, 'finalized');
    assert.deepEqual(job?.analyses, ['transcription', 'toxicity']);
    const uploaded = emulator.getMediaFiles(jobId) ?? [];
    assert.equal(uploaded.length, 1);
    assert.ok(uploaded[0]?.data.equals(await readFile(JFK_WAV)), 'uploaded bytes differ from the file');
    assert.match(result.stderr, /finalized at /);

    const lines = (await readFile(out, 'utf8')).trim().split('\n');
    const results = lines.map((line) => JSON.parse(line) as { job_id: string; analysis: string });
    assert.equal(results.length, emulator.getResults(jobId)?.length);
    assert.ok(results.every((entry) => entry.job_id === jobId));
    assert.deepEqual([...new Set(results.map((entry) => entry.analysis))].sort(), ['toxicity', 'transcription']);
  });

  it('submit rejects a missing file', async () => {
    const jobsBefore = emulator.listJobIds().length;
    const result = await cli(['submit', join(dir, 'absent.wav')]);

    assert.equal(result.code, 1);
    assert.match(result.stderr, /cannot read .*absent\.wav: not found; check the path/);
    assert.equal(emulator.listJobIds().length, jobsBefore, 'a job was created for a missing file');
  });

  it('jobs list, get and results', async () => {
    const submitted = await cli(['submit', JFK_WAV]);
    const jobId = /job (job_\S+) created/.exec(submitted.stderr)?.[1];
    assert.ok(jobId, submitted.stderr);

    const list = await cli(['jobs', 'list']);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^JOB ID +MODE +STATUS/);
    assert.match(list.stdout, new RegExp(`^${jobId} +file +finalized`, 'm'));

    const get = await cli(['jobs', 'get', jobId, '--json']);
    assert.equal(get.code, 0, get.stderr);
    assert.equal((JSON.parse(get.stdout) as Job).job_id, jobId);

    const out = join(dir, 'results.jsonl');
    const results = await cli(['jobs', 'results', jobId, '--out', out]);
    assert.equal(results.code, 0, results.stderr);
    const written = (await readFile(out, 'utf8')).trim().split('\n').map((line) => JSON.parse(line) as { job_id: string; alias: string });
    assert.deepEqual(
      written.map(({ job_id: _jobId, ...result }) => result),
      emulator.getResults(jobId),
    );
  });

  it('jobs finalize finalizes an active job', async () => {
    const client = new JobsClient({ baseUrl: emulator.baseUrl, accountId: emulator.accountId, apiKey: emulator.apiKey });
    const job = await client.createJob({ mode: 'realtime', analyses: ['transcription'] });
    assert.equal(emulator.getJob(job.job_id)?.status, 'active');

    const result = await cli(['jobs', 'finalize', job.job_id]);

    assert.equal(result.code, 0, result.stderr);
    assert.equal(emulator.getJob(job.job_id)?.status, 'finalized');
    assert.match(result.stderr, new RegExp(`job ${job.job_id}: finalized at `));
  });

  it('jobs get names an unknown job', async () => {
    const result = await cli(['jobs', 'get', 'job_unknown']);

    assert.equal(result.code, 1);
    assert.equal(result.stderr, 'modulate-agent: job job_unknown not found; list jobs with modulate-agent jobs list\n');
  });

  it('jobs list takes --config', async () => {
    const keyFile = join(dir, 'api_key');
    await writeConfig(dir, `${emulator.apiKey}\n`, 'api_key');
    const config = await writeConfig(
      dir,
      `api:\n  base_url: ${emulator.baseUrl}\n  account_id: emulator\n  api_key_file: ${keyFile}\njobs:\n  - name: x\n    analyses: [transcription]\n    streams:\n      - alias: a\n        source: {type: tone}\n`,
      'jobs-config.yaml',
    );
    const result = await cli(['jobs', 'list', '--config', config], { MODULATE_ACCOUNT_ID: '', MODULATE_API_KEY: '' });

    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^JOB ID/);
  });

  it('jobs list takes an api-only config', async () => {
    const config = await writeConfig(
      dir,
      `api:\n  base_url: \${TEST_BASE_URL}\n  account_id: emulator\n  api_key_file: api_key\n`,
      'api-only.yaml',
    );
    const result = await cli(['jobs', 'list', '--config', config], { TEST_BASE_URL: emulator.baseUrl, MODULATE_API_KEY: '' });

    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^JOB ID/);
  });

  it('invalid api config exits 78', async () => {
    const config = await writeConfig(dir, 'api:\n  base_url: ftp://nowhere\n  account_id: emulator\n  api_key: k\n', 'bad-api.yaml');
    const result = await cli(['jobs', 'list', '--config', config]);

    assert.equal(result.code, 78);
    assert.match(result.stderr, /bad-api\.yaml: api\.base_url: /);
  });

  it('jobs list without settings exits 78', async () => {
    const result = await cli(['jobs', 'list'], { MODULATE_ACCOUNT_ID: '', MODULATE_API_KEY: undefined });

    assert.equal(result.code, 78);
    assert.match(result.stderr, /no account ID: pass --config/);
  });

  it('jobs list with a wrong key exits 78', async () => {
    const result = await cli(['jobs', 'list'], { MODULATE_API_KEY: 'wrong-key' });

    assert.equal(result.code, 78);
    assert.match(result.stderr, /401/);
    assert.match(result.stderr, /check api\.account_id and the API key/);
  });
});

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { Emulator, type EmulatorEvent } from '../../src/emulator/emulator.ts';
import { makeTempDir, parseLogLines, startCli, withTimeout, writeConfig } from '../helpers/tools.ts';
import { logsWithMessage, serviceConfigYaml, waitForLog, type JobSpec } from './service-helpers.ts';

const TONE = '{type: tone, speech_like: true}';

interface StateFileContent {
  jobs: Array<{ job_id: string; name: string; base_url: string; created_at: string; pid: number }>;
}

async function readState(stateDir: string): Promise<StateFileContent> {
  return JSON.parse(await readFile(join(stateDir, 'state.json'), 'utf8')) as StateFileContent;
}

describe('service signals', () => {
  let emulator: Emulator;
  let dir: string;

  before(async () => {
    emulator = await Emulator.start({ port: 0 });
    dir = await makeTempDir('service-signals-');
  });

  after(async () => {
    await emulator.close();
  });

  const eventsOf = (jobId: string, from: number): EmulatorEvent[] =>
    emulator.events.slice(from).filter((event) => event.jobId === jobId);

  const jobIdOf = async (run: ReturnType<typeof startCli>, name: string): Promise<string> => {
    const line = await waitForLog(run, (entry) => entry['msg'] === 'job created' && entry['job'] === name, 20_000, `job ${name} created`);
    return line['jobId'] as string;
  };

  const waitOpen = (jobId: string, alias: string, from: number): Promise<EmulatorEvent> =>
    emulator.waitFor((event) => event.type === 'stream_open' && event.jobId === jobId && event.alias === alias, 20_000, {
      fromIndex: from,
    });

  it('SIGTERM finalizes and flushes logs', async () => {
    const stateDir = join(dir, 'state-sigterm');
    const config = await writeConfig(
      dir,
      serviceConfigYaml({
        baseUrl: emulator.baseUrl,
        resultsDir: join(dir, 'results-sigterm'),
        jobs: [{ name: 'term', streams: [{ alias: 'a', source: TONE }, { alias: 'b', source: TONE }] }],
        service: { state_dir: stateDir },
      }),
      'sigterm.yaml',
    );
    const firstEvent = emulator.events.length;
    const run = startCli(['run', '--config', config], { TEST_API_KEY: emulator.apiKey });
    const jobId = await jobIdOf(run, 'term');
    await waitOpen(jobId, 'a', firstEvent);
    await waitOpen(jobId, 'b', firstEvent);
    assert.deepEqual((await readState(stateDir)).jobs.map((entry) => entry.job_id), [jobId]);

    run.child.kill('SIGTERM');
    const { code } = await withTimeout(run.exited, 20_000, 'the agent to exit after SIGTERM');

    assert.equal(code, 0, `agent exited with ${code}; stderr: ${run.stderr()}`);
    assert.equal(emulator.getJob(jobId)?.status, 'finalized');
    for (const alias of ['a', 'b']) {
      assert.equal(emulator.getRecording(jobId, alias)?.endOfStream, true, `alias ${alias}: no end-of-stream`);
    }
    const lines = parseLogLines(run.stdout());
    assert.equal(lines.at(-1)?.['msg'], 'agent stopped', 'the last log line before exit is missing');
    assert.deepEqual((await readState(stateDir)).jobs, [], 'the finalized job is still in the state file');
  });

  it('SIGHUP adds, removes and keeps streams', async () => {
    const resultsDir = join(dir, 'results-sighup');
    const write = (jobs: JobSpec[]): Promise<string> =>
      writeConfig(dir, serviceConfigYaml({ baseUrl: emulator.baseUrl, resultsDir, jobs }), 'sighup.yaml');
    const config = await write([
      { name: 'hup', streams: [{ alias: 'keep', source: TONE }, { alias: 'drop', source: TONE }, { alias: 'tune', source: TONE }] },
      { name: 'gone', streams: [{ alias: 'only', source: TONE }] },
    ]);
    const firstEvent = emulator.events.length;
    const run = startCli(['run', '--config', config], { TEST_API_KEY: emulator.apiKey });
    const hupId = await jobIdOf(run, 'hup');
    const goneId = await jobIdOf(run, 'gone');
    for (const alias of ['keep', 'drop', 'tune']) {
      await waitOpen(hupId, alias, firstEvent);
    }
    await waitOpen(goneId, 'only', firstEvent);

    // Reload 1: remove "drop", add "new", change the tone of "tune", remove job "gone", add job "fresh".
    const reloadEvent = emulator.events.length;
    await write([
      {
        name: 'hup',
        streams: [
          { alias: 'keep', source: TONE },
          { alias: 'tune', source: '{type: tone, speech_like: true, frequency_hz: 880}' },
          { alias: 'new', source: TONE },
        ],
      },
      { name: 'fresh', streams: [{ alias: 'solo', source: TONE }] },
    ]);
    run.child.kill('SIGHUP');
    await waitForLog(run, (line) => line['msg'] === 'config reloaded', 20_000, 'config reloaded');
    const freshId = await jobIdOf(run, 'fresh');
    await waitOpen(hupId, 'new', reloadEvent);
    await waitOpen(freshId, 'solo', reloadEvent);
    await emulator.waitFor((event) => event.type === 'end_of_stream' && event.jobId === hupId && event.alias === 'drop', 20_000, {
      fromIndex: reloadEvent,
    });
    await emulator.waitFor((event) => event.type === 'job_finalized' && event.jobId === goneId, 30_000, { fromIndex: reloadEvent });
    await waitOpen(hupId, 'tune', reloadEvent);

    const keep = emulator.getRecording(hupId, 'keep');
    assert.equal(keep?.connections, 1, 'the unchanged stream was reconnected');
    assert.equal(keep?.endOfStream, false);
    const keepClosed = eventsOf(hupId, firstEvent).filter((event) => event.type === 'stream_closed' && event.alias === 'keep');
    assert.deepEqual(keepClosed, [], 'the unchanged stream was closed');
    const tune = emulator.getRecording(hupId, 'tune');
    assert.equal(tune?.connections, 2, 'the changed stream did not continue its alias on a new connection');
    assert.equal(tune?.endOfStream, false, 'the changed stream ended its alias');
    assert.equal(emulator.getRecording(hupId, 'drop')?.endOfStream, true);
    assert.equal(emulator.getJob(goneId)?.status, 'finalized');

    // Reload 2: an invalid config is rejected and changes nothing.
    const invalidEvent = emulator.events.length;
    await writeConfig(dir, 'api:\n  base_url: not a url\njobs: []\n', 'sighup.yaml');
    run.child.kill('SIGHUP');
    const rejected = await waitForLog(run, (line) => line['msg'] === 'config reload rejected; the running config stays', 20_000, 'reload rejected');
    const error = rejected['err'] as { message: string };
    assert.match(error.message, /api\.base_url/);
    assert.match(error.message, /sighup\.yaml/);

    // Reload 3: the same config as running changes nothing.
    await write([
      {
        name: 'hup',
        streams: [
          { alias: 'keep', source: TONE },
          { alias: 'tune', source: '{type: tone, speech_like: true, frequency_hz: 880}' },
          { alias: 'new', source: TONE },
        ],
      },
      { name: 'fresh', streams: [{ alias: 'solo', source: TONE }] },
    ]);
    run.child.kill('SIGHUP');
    await waitForLog(run, (line) => line['msg'] === 'config reloaded; no job or stream changed', 20_000, 'unchanged reload');
    const afterInvalid = emulator.events.slice(invalidEvent);
    assert.deepEqual(
      afterInvalid.filter((event) => event.type === 'stream_open' || event.type === 'stream_closed' || event.type === 'job_created'),
      [],
      'the rejected or unchanged reload touched a stream or job',
    );

    const stopEvent = emulator.events.length;
    run.child.kill('SIGTERM');
    const { code } = await withTimeout(run.exited, 30_000, 'the agent to exit after SIGTERM');
    assert.equal(code, 0, `agent exited with ${code}; stderr: ${run.stderr()}`);
    for (const jobId of [hupId, freshId]) {
      assert.equal(emulator.getJob(jobId)?.status, 'finalized', `job ${jobId} not finalized`);
    }
    assert.equal(emulator.getRecording(hupId, 'keep')?.connections, 1);
    for (const alias of ['keep', 'tune', 'new']) {
      assert.equal(emulator.getRecording(hupId, alias)?.endOfStream, true, `alias ${alias}: no end-of-stream at exit`);
    }
    assert.ok(emulator.events.slice(stopEvent).some((event) => event.type === 'job_finalized' && event.jobId === hupId));
    assert.equal(logsWithMessage(run, 'job created').length, 3);
  });

  it('recovers an orphan after SIGKILL', async () => {
    const stateDir = join(dir, 'state-kill');
    const resultsDir = join(dir, 'results-kill');
    const config = await writeConfig(
      dir,
      serviceConfigYaml({
        baseUrl: emulator.baseUrl,
        resultsDir,
        jobs: [{ name: 'crashy', streams: [{ alias: 'mic', source: TONE }] }],
        service: { state_dir: stateDir },
      }),
      'sigkill.yaml',
    );
    const firstEvent = emulator.events.length;
    const first = startCli(['run', '--config', config], { TEST_API_KEY: emulator.apiKey });
    const orphanId = await jobIdOf(first, 'crashy');
    await waitOpen(orphanId, 'mic', firstEvent);
    await emulator.waitFor((event) => event.type === 'result_produced' && event.jobId === orphanId, 20_000, { fromIndex: firstEvent });
    assert.deepEqual((await readState(stateDir)).jobs.map((entry) => entry.job_id), [orphanId]);

    first.child.kill('SIGKILL');
    const killed = await withTimeout(first.exited, 10_000, 'the agent to die');
    assert.equal(killed.signal, 'SIGKILL');
    assert.equal(emulator.getJob(orphanId)?.status, 'active', 'the killed agent finalized its job');

    const second = startCli(['run', '--config', config], { TEST_API_KEY: emulator.apiKey });
    const recovered = await waitForLog(
      second,
      (line) => line['msg'] === 'orphaned job finalized' && line['jobId'] === orphanId,
      30_000,
      'orphaned job finalized',
    );
    assert.equal(emulator.getJob(orphanId)?.status, 'finalized');
    assert.equal(recovered['resultsFile'], join(resultsDir, `${orphanId}.jsonl`));
    const results = (await readFile(join(resultsDir, `${orphanId}.jsonl`), 'utf8')).trim().split('\n');
    assert.ok(results.length > 0 && results.every((line) => (JSON.parse(line) as { job_id: string }).job_id === orphanId));

    const newId = await jobIdOf(second, 'crashy');
    assert.notEqual(newId, orphanId);
    await waitOpen(newId, 'mic', firstEvent);
    assert.deepEqual((await readState(stateDir)).jobs.map((entry) => entry.job_id), [newId]);

    second.child.kill('SIGTERM');
    const { code } = await withTimeout(second.exited, 20_000, 'the second agent to exit');
    assert.equal(code, 0, `agent exited with ${code}; stderr: ${second.stderr()}`);
    assert.deepEqual((await readState(stateDir)).jobs, []);
  });
});

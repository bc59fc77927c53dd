import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { StateFile, type StateJobEntry } from '../../src/service/state-file.ts';
import { makeTempDir } from '../helpers/tools.ts';

function entry(jobId: string): StateJobEntry {
  return { job_id: jobId, name: 'job', base_url: 'http://127.0.0.1:1', created_at: '2026-01-01T00:00:00.000Z', pid: 123 };
}

describe('state file', () => {
  it('missing file has no jobs', async () => {
    const state = new StateFile(join(await makeTempDir('state-'), 'absent'));

    assert.deepEqual(await state.load(), []);
  });

  it('add and remove persist', async () => {
    const dir = await makeTempDir('state-');
    const state = new StateFile(join(dir, 'nested'));
    await Promise.all([state.add(entry('job_1')), state.add(entry('job_2')), state.add(entry('job_3'))]);
    await state.remove('job_2');

    const reread = new StateFile(join(dir, 'nested'));
    assert.deepEqual((await reread.load()).map((job) => job.job_id), ['job_1', 'job_3']);
    const written = JSON.parse(await readFile(join(dir, 'nested', 'state.json'), 'utf8')) as { version: number };
    assert.equal(written.version, 1);
    assert.deepEqual(await readdir(join(dir, 'nested')), ['state.json'], 'a temporary file was left behind');
  });

  it('invalid JSON is reported', async () => {
    const dir = await makeTempDir('state-');
    await writeFile(join(dir, 'state.json'), '{"jobs": [');
    const state = new StateFile(dir);

    await assert.rejects(state.load(), (error: Error & { code?: string }) => {
      assert.equal(error.code, 'ERR_STATE_FILE');
      assert.match(error.message, /state\.json is not valid JSON/);
      assert.match(error.message, /moved it to .*state\.json\.invalid/);
      return true;
    });
    assert.deepEqual(await readdir(dir), ['state.json.invalid']);
    assert.equal(await readFile(join(dir, 'state.json.invalid'), 'utf8'), '{"jobs": [');
  });

  it('malformed entries are skipped', async () => {
    const dir = await makeTempDir('state-');
    await writeFile(join(dir, 'state.json'), JSON.stringify({ version: 1, jobs: [entry('job_ok'), { job_id: 7 }] }));

    assert.deepEqual((await new StateFile(dir).load()).map((job) => job.job_id), ['job_ok']);
  });
});

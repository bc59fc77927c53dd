import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { parseConfigText } from '../../src/config/load-config.ts';
import type { AgentConfig } from '../../src/config/types.ts';
import { planReload } from '../../src/service/reload-plan.ts';

async function config(jobsYaml: string, serviceYaml = ''): Promise<AgentConfig> {
  return parseConfigText(
    `api:\n  base_url: http://127.0.0.1:1\n  account_id: a\n  api_key: k\njobs:\n${jobsYaml}${serviceYaml === '' ? '' : `service:\n${serviceYaml}`}`,
  );
}

const TONE = '{type: tone}';

function job(name: string, streams: Array<[string, string]>, analyses = 'transcription'): string {
  const lines = streams.map(([alias, source]) => `      - alias: ${alias}\n        source: ${source}\n`).join('');
  return `  - name: ${name}\n    analyses: [${analyses}]\n    streams:\n${lines}`;
}

const noAliasesUsed = { usedAliases: () => new Set<string>() };

describe('reload plan', () => {
  it('identical config changes nothing', async () => {
    const current = await config(job('a', [['x', TONE]]));
    const plan = planReload(current, await config(job('a', [['x', TONE]])), noAliasesUsed);

    assert.deepEqual(plan, { jobs: [], problems: [], needsRestart: [] });
  });

  it('streams added, removed, replaced', async () => {
    const current = await config(job('a', [['keep', TONE], ['drop', TONE], ['tune', TONE]]));
    const next = await config(job('a', [['keep', TONE], ['tune', '{type: tone, frequency_hz: 880}'], ['new', TONE]]));
    const plan = planReload(current, next, noAliasesUsed);
    const change = plan.jobs[0];

    assert.equal(plan.jobs.length, 1);
    assert.equal(change?.action, 'update');
    assert.ok(change?.action === 'update');
    assert.deepEqual(change.streams.removed, ['drop']);
    assert.deepEqual(change.streams.unchanged, ['keep']);
    assert.deepEqual(change.streams.replaced.map((stream) => stream.alias), ['tune']);
    assert.deepEqual(change.streams.added.map((stream) => stream.alias), ['new']);
    assert.deepEqual(plan.problems, []);
  });

  it('jobs added, removed, replaced', async () => {
    const current = await config(job('old', [['x', TONE]]) + job('same', [['x', TONE]]) + job('swap', [['x', TONE]]));
    const next = await config(job('same', [['x', TONE]]) + job('swap', [['x', TONE]], 'transcription, toxicity') + job('new', [['x', TONE]]));
    const plan = planReload(current, next, noAliasesUsed);

    assert.deepEqual(
      plan.jobs.map((change) => `${change.action} ${change.name}`),
      ['remove old', 'replace swap', 'add new'],
    );
  });

  it('output format change is rejected', async () => {
    const current = await config(job('a', [['x', TONE]]));
    const next = await config('  - name: a\n    analyses: [transcription]\n    streams:\n      - alias: x\n        source: {type: tone}\n        output: {sample_rate_hz: 8000}\n');
    const plan = planReload(current, next, noAliasesUsed);

    assert.equal(plan.problems.length, 1);
    assert.match(plan.problems[0] ?? '', /stream x changes its output from s16le 16000 Hz 1 ch to s16le 8000 Hz 1 ch/);
  });

  it('ended alias cannot be added', async () => {
    const current = await config(job('a', [['x', TONE]]));
    const next = await config(job('a', [['x', TONE], ['gone', TONE]]));
    const plan = planReload(current, next, { usedAliases: () => new Set(['x', 'gone']) });

    assert.equal(plan.problems.length, 1);
    assert.match(plan.problems[0] ?? '', /alias gone has already ended/);
  });

  it('restart-only settings are listed', async () => {
    const current = await config(job('a', [['x', TONE]]), '  metrics_listen: 127.0.0.1:1\n');
    const next = await config(job('a', [['x', TONE]]), '  metrics_listen: 127.0.0.1:2\n  log_level: debug\n');
    const plan = planReload(current, next, noAliasesUsed);

    assert.deepEqual(plan.needsRestart, ['service.metrics_listen', 'service.log_level']);
    assert.deepEqual(plan.jobs, []);
  });
});

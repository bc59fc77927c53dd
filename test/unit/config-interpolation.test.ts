import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ConfigValidationError } from '../../src/config/config-validation-error.ts';
import { expandEnvReferences } from '../../src/config/interpolate-env.ts';
import { parseConfigText } from '../../src/config/load-config.ts';

const CONFIG = `api:
  account_id: \${ACCOUNT}
  api_key: \${API_KEY:-fallback-key-0123}
jobs:
  - name: \${JOB_NAME:-lobby}
    analyses: [transcription]
    create_body:
      note: "cost is $\${PRICE} per \${UNIT:-hour}"
      \${NOT_A_KEY}: kept
    streams:
      - alias: mic
        source:
          type: tone
          frequency_hz: \${FREQ_HZ:-880}
          speech_like: \${SPEECH:-true}
        output:
          frame_ms: \${FRAME_MS}
`;

describe('expandEnvReferences', () => {
  const env = { HOST: 'voice-7', EMPTY: '' };
  const cases: [text: string, expected: string][] = [
    ['plain text', 'plain text'],
    ['${HOST}', 'voice-7'],
    ['id-${HOST}-x', 'id-voice-7-x'],
    ['${MISSING:-dflt}', 'dflt'],
    ['${EMPTY:-dflt}', 'dflt'],
    ['${HOST:-dflt}', 'voice-7'],
    ['${MISSING:-}', ''],
    ['${MISSING:-a:b/c d}', 'a:b/c d'],
    ['$${HOST}', '${HOST}'],
    ['$${HOST} and ${HOST}', '${HOST} and voice-7'],
    ['$$ and $HOST', '$$ and $HOST'],
    ['${EMPTY}', ''],
  ];

  for (const [text, expected] of cases) {
    it(`expands ${JSON.stringify(text)}`, () => {
      const result = expandEnvReferences(text, env);

      assert.deepEqual(result.problems, []);
      assert.equal(result.value, expected);
    });
  }

  it('reports unset variable with fix', () => {
    const result = expandEnvReferences('${NOPE}', env, ['service', 'state_dir']);

    assert.deepEqual(result.problems, [
      'environment variable NOPE is not set; set NOPE in the environment or give a default: ${NOPE:-value}',
    ]);
  });

  it('reports unterminated reference', () => {
    const result = expandEnvReferences('x-${HOST', env);

    assert.equal(result.problems.length, 1);
    assert.match(result.problems[0] ?? '', /^unterminated reference "\$\{HOST"/);
  });

  it('reports invalid variable name', () => {
    const result = expandEnvReferences('${1BAD}', env);

    assert.equal(result.problems.length, 1);
    assert.match(result.problems[0] ?? '', /^invalid reference "\$\{1BAD\}"; write \$\{NAME\}/);
  });
});

describe('config interpolation', () => {
  it('expands values from env', async () => {
    const config = await parseConfigText(CONFIG, {
      env: { ACCOUNT: 'acct-9', FRAME_MS: '20', FREQ_HZ: '1000', SPEECH: 'false', UNIT: 'minute' },
    });
    const stream = config.jobs[0]?.streams[0];

    assert.equal(config.api.account_id, 'acct-9');
    assert.equal(config.api.api_key, 'fallback-key-0123');
    assert.equal(config.jobs[0]?.name, 'lobby');
    assert.equal(stream?.output.frame_ms, 20);
    assert.deepEqual(stream?.source, {
      type: 'tone',
      frequency_hz: 1000,
      speech_like: false,
      level_dbfs: -20,
      sample_rate_hz: 48000,
      channels: 1,
    });
  });

  it('keeps escapes and keys literal', async () => {
    const config = await parseConfigText(CONFIG, { env: { ACCOUNT: 'acct-9', FRAME_MS: '20' } });

    assert.deepEqual(config.jobs[0]?.create_body, { note: 'cost is ${PRICE} per hour', '${NOT_A_KEY}': 'kept' });
  });

  it('keeps quoted numbers as strings', async () => {
    const text = CONFIG.replace('account_id: ${ACCOUNT}', 'account_id: "${ACCOUNT}"');
    const config = await parseConfigText(text, { env: { ACCOUNT: '12345', FRAME_MS: '20' } });

    assert.equal(config.api.account_id, '12345');
  });

  it('keeps tagged numbers as strings', async () => {
    const text = CONFIG.replace('account_id: ${ACCOUNT}', 'account_id: !!str ${ACCOUNT}');
    const config = await parseConfigText(text, { env: { ACCOUNT: '12345', FRAME_MS: '20' } });

    assert.equal(config.api.account_id, '12345');
  });

  it('types unquoted numbers as numbers', async () => {
    await assert.rejects(
      parseConfigText(CONFIG, { file: 'agent.yaml', env: { ACCOUNT: '12345', FRAME_MS: '20' } }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigValidationError);
        assert.equal(
          error.message,
          'agent.yaml:2:15: api.account_id: must be a string, got 12345 (put the value in quotes to make it a string)',
        );
        return true;
      },
    );
  });

  it('reports unset variables with location', async () => {
    await assert.rejects(parseConfigText(CONFIG, { file: 'agent.yaml', env: {} }), (error: unknown) => {
      assert.ok(error instanceof ConfigValidationError);
      assert.equal(error.problems.length, 2);
      assert.deepEqual(error.message.split('\n'), [
        '2 problems in agent.yaml:',
        '  agent.yaml:2:15: api.account_id: environment variable ACCOUNT is not set; ' +
          'set ACCOUNT in the environment or give a default: ${ACCOUNT:-value}',
        '  agent.yaml:17:21: jobs[0].streams[0].output.frame_ms: environment variable FRAME_MS is not set; ' +
          'set FRAME_MS in the environment or give a default: ${FRAME_MS:-value}',
      ]);
      return true;
    });
  });
});

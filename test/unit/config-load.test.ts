import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { ConfigValidationError } from '../../src/config/config-validation-error.ts';
import { loadConfig, parseConfigText } from '../../src/config/load-config.ts';
import { DEFAULT_DELIVERY, DEFAULT_OUTPUT } from '../../src/config/schema.ts';
import { ConfigError } from '../../src/errors.ts';

/** A valid config; tests append to it or replace parts of it. */
const VALID = `api:
  account_id: acct-1
  api_key: test-key-0123456789
jobs:
  - name: lobby
    analyses: [transcription]
    streams:
      - alias: mic
        source:
          type: tone
`;

/** Parses `text` as agent.yaml and returns the validation error it must raise. */
async function expectProblems(text: string): Promise<ConfigValidationError> {
  try {
    await parseConfigText(text, { file: 'agent.yaml', env: {} });
  } catch (error) {
    assert.ok(error instanceof ConfigValidationError, `expected ConfigValidationError, got ${String(error)}`);
    assert.equal(error.code, 'ERR_CONFIG_INVALID');
    return error;
  }
  assert.fail('expected the config to be rejected');
}

describe('config YAML syntax', () => {
  it('reports file, line and column', async () => {
    const text = 'api:\n  account_id: a\n bad: 1\n';
    const error = await expectProblems(text);

    assert.equal(error.problems.length, 1);
    assert.equal(error.problems[0]?.line, 3);
    assert.equal(error.problems[0]?.column, 1);
    assert.match(error.message, /^agent\.yaml:3:1: invalid YAML: /);
    assert.equal(error.file, 'agent.yaml');
  });

  it('reports an unclosed flow sequence', async () => {
    const error = await expectProblems(VALID.replace('[transcription]', '[transcription'));

    assert.match(error.message, /agent\.yaml:\d+:\d+: invalid YAML: .*(flow|\])/i);
  });

  it('rejects duplicate keys', async () => {
    const error = await expectProblems('api:\n  account_id: a\n  account_id: b\n');

    assert.match(error.message, /^agent\.yaml:3:3: invalid YAML: Map keys must be unique/);
  });

  it('rejects several YAML documents', async () => {
    const error = await expectProblems(`${VALID}---\n${VALID}`);

    assert.match(error.message, /single YAML document/);
  });

  it('rejects an empty file', async () => {
    const error = await expectProblems('');

    assert.equal(error.message, 'agent.yaml: the config is empty; it needs at least the keys api and jobs');
  });
});

describe('config schema problems', () => {
  it('names unknown key and allowed keys', async () => {
    const text = VALID.replace('        source:', '        sorce:\n          type: tone\n        source:');
    const error = await expectProblems(text);

    assert.equal(error.problems.length, 1);
    const problem = error.problems[0];
    assert.equal(problem?.keyPath, 'jobs[0].streams[0].sorce');
    assert.equal(problem?.line, 9);
    assert.equal(problem?.column, 9);
    assert.match(problem?.message ?? '', /unknown key "sorce" \(did you mean "source"\?\)/);
    assert.match(problem?.message ?? '', /allowed keys: alias, alias_template, source, output, delivery$/);
  });

  it('names unknown top-level key', async () => {
    const error = await expectProblems(`${VALID}servce:\n  log_level: debug\n`);

    assert.equal(error.problems[0]?.keyPath, 'servce');
    assert.equal(
      error.message,
      'agent.yaml:11:1: servce: unknown key "servce" (did you mean "service"?); allowed keys: api, defaults, jobs, service',
    );
  });

  it('reports wrong type with value', async () => {
    const text = VALID.replace('          type: tone\n', '          type: tone\n          frequency_hz: "440"\n');
    const error = await expectProblems(text);

    assert.equal(
      error.message,
      'agent.yaml:11:25: jobs[0].streams[0].source.frequency_hz: must be a number, got "440" ' +
        '(a quoted value is a string in YAML; remove the quotes)',
    );
  });

  it('reports unknown source type', async () => {
    const error = await expectProblems(VALID.replace('type: tone', 'type: mic'));

    assert.equal(
      error.message,
      'agent.yaml:10:17: jobs[0].streams[0].source.type: must be one of file, tone, rtp, device, got "mic"',
    );
  });

  it('reports missing required key', async () => {
    const error = await expectProblems(VALID.replace('  account_id: acct-1\n', ''));

    assert.equal(error.problems[0]?.keyPath, 'api.account_id');
    assert.match(error.problems[0]?.message ?? '', /required key is missing/);
    // The key is absent, so the location is its parent key `api:`.
    assert.equal(error.problems[0]?.line, 1);
  });

  it('reports duplicate alias', async () => {
    const text = `${VALID}      - alias: mic\n        source:\n          type: tone\n`;
    const error = await expectProblems(text);

    assert.equal(
      error.message,
      'agent.yaml:11:16: jobs[0].streams[1].alias: duplicate alias "mic" (already used by streams[0]); ' +
        'each alias in a job must be unique',
    );
  });

  it('reports bad alias characters', async () => {
    const error = await expectProblems(VALID.replace('alias: mic', 'alias: "mic 1"'));

    assert.equal(
      error.message,
      'agent.yaml:8:16: jobs[0].streams[0].alias: alias must be 1 to 64 characters of A-Z a-z 0-9 . _ -',
    );
  });

  it('reports bad alias template', async () => {
    const text =
      `${VALID}      - alias_template: "room/{ssrc}"\n` +
      '        source:\n          type: rtp\n          listen: "127.0.0.1:5004"\n';
    const error = await expectProblems(text);

    assert.equal(error.problems[0]?.keyPath, 'jobs[0].streams[1].alias_template');
    assert.match(error.message, /alias_template must give aliases of 1 to 64 characters/);
  });

  it('reports bad sample rate', async () => {
    const text = `${VALID}defaults:\n  output:\n    sample_rate_hz: 12345\n`;
    const error = await expectProblems(text);

    assert.equal(
      error.message,
      'agent.yaml:13:21: defaults.output.sample_rate_hz: sample rate must be one of 8000, 11025, 16000, 22050, ' +
        '32000, 44100, 48000, 96000 Hz',
    );
  });

  it('reports out-of-range port and payload type', async () => {
    const text =
      `${VALID}      - alias_template: "room-{ssrc}"\n        source:\n          type: rtp\n` +
      `          listen: "127.0.0.1:70000"\n          payload_types:\n            200: "opus/48000/2"\n`;
    const error = await expectProblems(text);

    const byPath = new Map(error.problems.map((problem) => [problem.keyPath, problem.message]));
    assert.equal(byPath.get('jobs[0].streams[1].source.listen'), 'port must be 0 to 65535');
    assert.match(byPath.get('jobs[0].streams[1].source.payload_types["200"]') ?? '', /from 0 to 127/);
  });

  it('lists several problems, one per line', async () => {
    const text = VALID.replace('name: lobby', 'name: "lob by"').replace('type: tone', 'type: tone\n          channels: 0');
    const error = await expectProblems(`${text}extra: 1\n`);

    const lines = error.message.split('\n');
    assert.equal(lines[0], '3 problems in agent.yaml:');
    assert.equal(lines.length, 4);
    assert.match(lines[1] ?? '', /^ {2}agent\.yaml:5:11: jobs\[0\]\.name: job name must be/);
    assert.equal(lines[2], '  agent.yaml:11:21: jobs[0].streams[0].source.channels: must be at least 1, got 0');
    assert.match(lines[3] ?? '', /^ {2}agent\.yaml:12:1: extra: unknown key "extra"/);
  });
});

describe('config defaults merge', () => {
  it('merges defaults into streams', async () => {
    const text =
      `${VALID}      - alias: mic2\n        source:\n          type: tone\n` +
      '        output:\n          frame_ms: 40\n' +
      '        delivery:\n          reconnect:\n            max_delay_ms: 5000\n' +
      'defaults:\n  output:\n    sample_rate_hz: 48000\n' +
      '  delivery:\n    max_outage_ms: 1000\n    reconnect:\n      initial_delay_ms: 500\n';
    const config = await parseConfigText(text, { file: 'agent.yaml', env: {} });
    const [first, second] = config.jobs[0]?.streams ?? [];

    assert.deepEqual(first?.output, { ...DEFAULT_OUTPUT, sample_rate_hz: 48000 });
    assert.deepEqual(first?.delivery, {
      ...DEFAULT_DELIVERY,
      max_outage_ms: 1000,
      reconnect: { ...DEFAULT_DELIVERY.reconnect, initial_delay_ms: 500 },
    });
    assert.deepEqual(second?.output, { ...DEFAULT_OUTPUT, sample_rate_hz: 48000, frame_ms: 40 });
    assert.deepEqual(second?.delivery.reconnect, {
      ...DEFAULT_DELIVERY.reconnect,
      initial_delay_ms: 500,
      max_delay_ms: 5000,
    });
    assert.equal(second?.delivery.max_outage_ms, 1000);
    assert.equal(first?.alias, 'mic');
    assert.equal(first?.alias_template, undefined);
  });

  it('applies built-in defaults without defaults key', async () => {
    const config = await parseConfigText(VALID, { env: {} });
    const stream = config.jobs[0]?.streams[0];

    assert.deepEqual(stream?.output, DEFAULT_OUTPUT);
    assert.deepEqual(stream?.delivery, DEFAULT_DELIVERY);
    assert.equal(config.api.base_url, 'https://api.modulate.ai');
    assert.equal(config.api.auth, 'basic');
    assert.equal(config.service.log_level, 'info');
    assert.deepEqual(config.jobs[0]?.create_body, {});
  });

  it('rejects G.711 at 16 kHz', async () => {
    const error = await expectProblems(`${VALID}defaults:\n  output:\n    format: mulaw\n`);

    assert.equal(error.problems.length, 1);
    assert.equal(error.problems[0]?.keyPath, 'jobs[0].streams[0].output.sample_rate_hz');
    assert.match(error.message, /output\.format mulaw \(from defaults\.output\) is G\.711, defined at 8000 Hz only/);
    assert.match(error.message, /sample_rate_hz is 16000 \(built-in default\); set output\.sample_rate_hz: 8000/);
  });

  it('accepts G.711 at 8 kHz', async () => {
    const config = await parseConfigText(`${VALID}defaults:\n  output:\n    format: alaw\n    sample_rate_hz: 8000\n`, {
      env: {},
    });

    assert.equal(config.jobs[0]?.streams[0]?.output.format, 'alaw');
  });

  it('rejects low water above high water', async () => {
    const text = VALID.replace(
      '          type: tone\n',
      '          type: tone\n        delivery:\n          low_water_bytes: 300000\n',
    );
    const error = await expectProblems(text);

    assert.equal(error.problems.length, 1);
    assert.equal(error.problems[0]?.keyPath, 'jobs[0].streams[0].delivery.low_water_bytes');
    assert.equal(error.problems[0]?.line, 12);
    assert.match(
      error.message,
      /low_water_bytes 300000 \(set on this stream\) must be less than delivery\.high_water_bytes 262144 \(built-in default\)/,
    );
  });

  it('rejects initial delay above max delay', async () => {
    const error = await expectProblems(`${VALID}defaults:\n  delivery:\n    reconnect:\n      initial_delay_ms: 20000\n`);

    assert.equal(error.problems[0]?.keyPath, 'jobs[0].streams[0].delivery.reconnect.initial_delay_ms');
    assert.match(error.message, /initial_delay_ms 20000 \(from defaults\.delivery\.reconnect\) must not exceed/);
  });

  it('rejects frames of partial samples', async () => {
    const error = await expectProblems(`${VALID}defaults:\n  output:\n    sample_rate_hz: 11025\n`);

    assert.equal(error.problems[0]?.keyPath, 'jobs[0].streams[0].output.frame_ms');
    assert.match(error.message, /gives 1102\.5 samples per frame; use a multiple of 40 ms, such as 120/);
  });

  it('rejects duplicate job names', async () => {
    const job = VALID.slice(VALID.indexOf('  - name'));
    const error = await expectProblems(`${VALID}${job}`);

    assert.equal(error.problems[0]?.keyPath, 'jobs[1].name');
    assert.match(error.message, /duplicate job name "lobby" \(already used by jobs\[0\]\)/);
  });

  it('rejects device source without results_dir', async () => {
    const device = '      - alias: desk\n        source:\n          type: device\n          device: default\n';
    const error = await expectProblems(`${VALID}${device}`);

    assert.equal(error.problems.length, 1);
    assert.equal(error.problems[0]?.keyPath, 'jobs[0].streams[1].source.type');
    assert.match(error.message, /a device source needs service\.results_dir/);
  });

  it('accepts device source with results_dir', async () => {
    const device = '      - alias: desk\n        source:\n          type: device\n          device: default\n';
    const config = await parseConfigText(`${VALID}${device}service:\n  results_dir: /tmp/results\n`, {
      file: 'agent.yaml',
      env: {},
    });

    assert.equal(config.jobs[0]?.streams[1]?.source.type, 'device');
  });

  it('rejects clashing rtp listen ports', async () => {
    const rtp = (alias: string, listen: string): string =>
      `      - alias_template: "${alias}-{ssrc}"\n        source:\n          type: rtp\n          listen: "${listen}"\n`;
    const streams = rtp('a', '0.0.0.0:5004') + rtp('b', '127.0.0.1:5004') + rtp('c', '127.0.0.1:5006');
    const error = await expectProblems(`${VALID}${streams}`);

    assert.equal(error.problems.length, 1);
    assert.equal(error.problems[0]?.keyPath, 'jobs[0].streams[2].source.listen');
    assert.match(error.message, /127\.0\.0\.1:5004 clashes with 0\.0\.0\.0:5004 of jobs\[0\]\.streams\[1\]\.source\.listen/);
  });
});

describe('config files and paths', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'config-load-'));
    await mkdir(join(dir, 'etc'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reports missing source file', async () => {
    const file = join(dir, 'missing-wav.yaml');
    await writeFile(file, `${VALID}      - alias: replay\n        source: {type: file, path: absent.wav}\n`);
    await assert.rejects(loadConfig(file, {}), (error: unknown) => {
      assert.ok(error instanceof ConfigValidationError);
      assert.equal(error.problems[0]?.keyPath, 'jobs[0].streams[1].source.path');
      assert.match(error.message, new RegExp(`file ${join(dir, 'absent.wav')} not found; check the path`));
      return true;
    });
  });

  it('reports source path that is a folder', async () => {
    const file = join(dir, 'folder-wav.yaml');
    await writeFile(file, `${VALID}      - alias: replay\n        source: {type: file, path: etc}\n`);
    await assert.rejects(loadConfig(file, {}), /etc is not a regular file; give the path of a WAV file/);
  });

  it('reports missing config file', async () => {
    const file = join(dir, 'absent.yaml');
    await assert.rejects(loadConfig(file, {}), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.file, file);
      assert.match(error.message, new RegExp(`^config file ${file} not found \\(ENOENT: no such file or directory`));
      return true;
    });
  });

  it('reports a directory as config file', async () => {
    await assert.rejects(loadConfig(dir, {}), /is a directory \(EISDIR/);
  });

  it('resolves relative paths against the config folder', async () => {
    await writeFile(join(dir, 'etc', 'key'), 'file-key-0123456789\n');
    const text = VALID.replace('  api_key: test-key-0123456789', '  api_key_file: key').replace(
      '          type: tone\n',
      '          type: file\n          path: audio/a.wav\n' +
        '      - alias: abs\n        source:\n          type: file\n          path: /srv/b.wav\n',
    );
    const file = join(dir, 'etc', 'agent.yaml');
    await writeFile(file, `${text}service:\n  results_dir: results\n  state_dir: ../state\n`);

    // /srv/b.wav does not exist here, so the source-file check is off.
    const config = await loadConfig(file, {}, { checkSourceFiles: false });
    const sources = config.jobs[0]?.streams.map((stream) => stream.source);

    assert.equal(config.file, file);
    assert.equal(config.api.api_key, 'file-key-0123456789');
    assert.deepEqual(sources?.[0], { type: 'file', path: join(dir, 'etc', 'audio', 'a.wav'), realtime: true });
    assert.deepEqual(sources?.[1], { type: 'file', path: '/srv/b.wav', realtime: true });
    assert.equal(config.service.results_dir, join(dir, 'etc', 'results'));
    assert.equal(config.service.state_dir, join(dir, 'state'));
  });

  it('resolves against baseDir for text', async () => {
    const text = VALID.replace('          type: tone\n', '          type: file\n          path: a.wav\n');
    const config = await parseConfigText(text, { env: {}, baseDir: '/opt/agent' });

    assert.deepEqual(config.jobs[0]?.streams[0]?.source, { type: 'file', path: '/opt/agent/a.wav', realtime: true });
    assert.equal(config.file, undefined);
  });

  it('names unnamed config text', async () => {
    await assert.rejects(parseConfigText('api: [', { env: {} }), /^ConfigValidationError: <config>:1:\d+: invalid YAML/);
  });
});

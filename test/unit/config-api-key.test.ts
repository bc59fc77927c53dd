import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { ConfigValidationError } from '../../src/config/config-validation-error.ts';
import { parseConfigText } from '../../src/config/load-config.ts';

const KEY = 'mk_live_0123456789abcdef';

function configWith(apiLines: string): string {
  return `api:
  account_id: acct-1
${apiLines}
jobs:
  - name: lobby
    analyses: [transcription]
    streams:
      - alias: mic
        source:
          type: tone
`;
}

/** Runs `parseConfigText` on agent.yaml in `dir` and returns the validation error it must raise. */
async function expectProblem(text: string, dir: string, env: NodeJS.ProcessEnv = {}): Promise<ConfigValidationError> {
  try {
    await parseConfigText(text, { file: join(dir, 'agent.yaml'), env });
  } catch (error) {
    assert.ok(error instanceof ConfigValidationError, `expected ConfigValidationError, got ${String(error)}`);
    assert.doesNotMatch(error.message, new RegExp(KEY));
    return error;
  }
  assert.fail('expected the config to be rejected');
}

describe('config API key', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'config-api-key-'));
    await mkdir(join(dir, 'creds'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads key from env', async () => {
    const config = await parseConfigText(configWith('  api_key: ${MODULATE_API_KEY}'), {
      env: { MODULATE_API_KEY: KEY },
    });

    assert.equal(config.api.api_key, KEY);
    assert.equal('api_key_file' in config.api, false);
  });

  it('reports unset key variable', async () => {
    const error = await expectProblem(configWith('  api_key: ${MODULATE_API_KEY}'), dir);

    assert.equal(error.problems.length, 1);
    assert.equal(error.problems[0]?.keyPath, 'api.api_key');
    assert.equal(error.problems[0]?.line, 3);
    assert.match(error.message, /environment variable MODULATE_API_KEY is not set/);
    assert.match(error.message, /or read the key from a file with api_key_file/);
  });

  it('reports empty key variable', async () => {
    const error = await expectProblem(configWith('  api_key: ${MODULATE_API_KEY}'), dir, { MODULATE_API_KEY: '' });

    assert.equal(error.problems[0]?.keyPath, 'api.api_key');
    assert.equal(error.problems[0]?.message, 'must not be empty');
  });

  it('reads key file and trims newline', async () => {
    await writeFile(join(dir, 'creds', 'api_key'), `${KEY}\n`);
    const config = await parseConfigText(configWith('  api_key_file: ${CREDENTIALS_DIRECTORY}/api_key'), {
      env: { CREDENTIALS_DIRECTORY: join(dir, 'creds') },
    });

    assert.equal(config.api.api_key, KEY);
  });

  it('trims one CRLF from key file', async () => {
    await writeFile(join(dir, 'creds', 'crlf_key'), `${KEY}\r\n`);
    const config = await parseConfigText(configWith('  api_key_file: creds/crlf_key'), {
      file: join(dir, 'agent.yaml'),
      env: {},
    });

    assert.equal(config.api.api_key, KEY);
  });

  it('reports missing key file with fix', async () => {
    const error = await expectProblem(configWith('  api_key_file: creds/absent'), dir);
    const path = join(dir, 'creds', 'absent');

    assert.equal(error.problems.length, 1);
    assert.equal(error.problems[0]?.keyPath, 'api.api_key_file');
    assert.equal(error.problems[0]?.line, 3);
    assert.equal(error.problems[0]?.column, 17);
    assert.match(error.message, new RegExp(`API key file ${path} does not exist \\(ENOENT\\)`));
    assert.match(error.message, /LoadCredential=api_key:/);
    assert.match(error.message, /\$\{CREDENTIALS_DIRECTORY\}\/api_key/);
  });

  it('reports unreadable key file', { skip: process.getuid?.() === 0 ? 'root reads any file' : false }, async () => {
    const path = join(dir, 'creds', 'locked');
    await writeFile(path, KEY);
    await chmod(path, 0o000);
    const error = await expectProblem(configWith(`  api_key_file: ${path}`), dir);

    assert.match(error.message, /permission denied \(EACCES\)/);
  });

  it('reports empty key file', async () => {
    await writeFile(join(dir, 'creds', 'empty'), '\n');
    const error = await expectProblem(configWith('  api_key_file: creds/empty'), dir);

    assert.match(error.message, /API key file .*creds\/empty is empty; write the key into it/);
  });

  it('reports extra lines in key file', async () => {
    await writeFile(join(dir, 'creds', 'two_lines'), `${KEY}\nsecond line\n`);
    const error = await expectProblem(configWith('  api_key_file: creds/two_lines'), dir);

    assert.match(error.message, /contains a line break inside the key/);
  });

  it('reports spaces around key', async () => {
    await writeFile(join(dir, 'creds', 'spaced'), ` ${KEY}\n`);
    const error = await expectProblem(configWith('  api_key_file: creds/spaced'), dir);

    assert.match(error.message, /has spaces or tabs around the key/);
  });

  it('uses injected secret reader', async () => {
    const paths: string[] = [];
    const config = await parseConfigText(configWith('  api_key_file: /run/credentials/agent/api_key'), {
      env: {},
      readSecretFile: async (path) => {
        paths.push(path);
        return `${KEY}\n`;
      },
    });

    assert.deepEqual(paths, ['/run/credentials/agent/api_key']);
    assert.equal(config.api.api_key, KEY);
  });

  it('rejects both key and key file', async () => {
    const error = await expectProblem(configWith(`  api_key: ${KEY}\n  api_key_file: creds/api_key`), dir);

    assert.equal(error.problems.length, 1);
    assert.equal(error.problems[0]?.keyPath, 'api.api_key');
    assert.equal(error.problems[0]?.message, 'api_key and api_key_file are both set; keep only one of them');
  });

  it('rejects neither key nor key file', async () => {
    const error = await expectProblem(configWith(''), dir);

    assert.equal(error.problems[0]?.keyPath, 'api.api_key_file');
    assert.equal(error.problems[0]?.message, 'no API key: set api_key_file (preferred) or api_key');
  });

  it('never echoes a mistyped key', async () => {
    const error = await expectProblem(configWith('  api_key: [mk_live_0123456789abcdef]'), dir);

    assert.equal(error.problems[0]?.message, 'must be a string');
  });
});

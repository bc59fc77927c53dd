import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';

import { parse } from 'yaml';

import { formatConfigError, runCheckConfig } from '../../src/config/check-config-command.ts';
import { parseConfigText } from '../../src/config/load-config.ts';
import { REDACTED, redactConfig } from '../../src/config/redact-config.ts';
import { ConfigError, EXIT_CONFIG } from '../../src/errors.ts';

const KEY = 'mk_live_SECRET_9f8e7d6c5b4a';

const CONFIG = `api:
  account_id: acct-1
  api_key_file: api_key
jobs:
  - name: lobby
    analyses: [transcription]
    create_body:
      metadata:
        pasted_by_mistake: "key=${KEY}"
    streams:
      - alias: mic
        source:
          type: tone
`;

/** A writable stream that keeps what is written to it. */
class TextSink extends Writable {
  text = '';

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.text += chunk.toString('utf8');
    callback();
  }
}

describe('runCheckConfig', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'config-check-'));
    await writeFile(join(dir, 'api_key'), `${KEY}\n`);
    await writeFile(join(dir, 'agent.yaml'), CONFIG);
    await writeFile(join(dir, 'bad.yaml'), CONFIG.replace('type: tone', 'type: mic'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('prints redacted YAML and returns 0', async () => {
    const out = new TextSink();
    const errorOut = new TextSink();
    const code = await runCheckConfig({ config: join(dir, 'agent.yaml'), env: {} }, out, errorOut);

    assert.equal(code, 0);
    assert.equal(errorOut.text, '');
    assert.equal(out.text.includes(KEY), false);
    assert.equal(out.text.includes('SECRET'), false);
    const printed = parse(out.text) as {
      api: { api_key: string };
      jobs: {
        streams: { output: { sample_rate_hz: number } }[];
        create_body: { metadata: { pasted_by_mistake: string } };
      }[];
    };
    assert.equal(printed.api.api_key, REDACTED);
    assert.equal(printed.jobs[0]?.create_body.metadata.pasted_by_mistake, `key=${REDACTED}`);
    assert.equal(printed.jobs[0]?.streams[0]?.output.sample_rate_hz, 16000);
  });

  it('prints redacted JSON', async () => {
    const out = new TextSink();
    const code = await runCheckConfig({ config: join(dir, 'agent.yaml'), json: true, env: {} }, out, new TextSink());
    const printed = JSON.parse(out.text) as { api: { api_key: string }; file: string };

    assert.equal(code, 0);
    assert.equal(out.text.includes(KEY), false);
    assert.equal(printed.api.api_key, REDACTED);
    assert.equal(printed.file, join(dir, 'agent.yaml'));
  });

  it('returns 78 on invalid config', async () => {
    const out = new TextSink();
    const errorOut = new TextSink();
    const file = join(dir, 'bad.yaml');
    const code = await runCheckConfig({ config: file, env: {} }, out, errorOut);

    assert.equal(code, EXIT_CONFIG);
    assert.equal(code, 78);
    assert.equal(out.text, '');
    assert.equal(
      errorOut.text,
      `config error: ${file}:13:17: jobs[0].streams[0].source.type: must be one of file, tone, rtp, device, got "mic"\n`,
    );
  });

  it('returns 78 on missing file', async () => {
    const errorOut = new TextSink();
    const code = await runCheckConfig({ config: join(dir, 'absent.yaml'), env: {} }, new TextSink(), errorOut);

    assert.equal(code, EXIT_CONFIG);
    assert.match(errorOut.text, /^config error: config file .*absent\.yaml not found \(ENOENT/);
  });
});

describe('redactConfig', () => {
  it('hides key and URL credentials', async () => {
    const text = CONFIG.replace(
      '  api_key_file: api_key',
      `  api_key: ${KEY}\n  base_url: https://user:pw@api.example.test/v1`,
    );
    const config = await parseConfigText(text, { env: {} });
    const redacted = redactConfig(config) as { api: { api_key: string; base_url: string } };

    assert.equal(redacted.api.api_key, REDACTED);
    assert.equal(redacted.api.base_url, `https://${REDACTED}@api.example.test/v1`);
    assert.equal(JSON.stringify(redacted).includes(KEY), false);
    assert.equal(config.api.api_key, KEY, 'the loaded config must stay intact');
  });
});

describe('formatConfigError', () => {
  it('adds a cause not in the message', () => {
    const error = new ConfigError('config file a.yaml cannot be parsed', { cause: new Error('disk on fire') });

    assert.equal(formatConfigError(error), 'config error: config file a.yaml cannot be parsed\n  caused by: disk on fire');
  });

  it('skips a cause already in the message', () => {
    const error = new ConfigError('cannot read a.yaml: EIO', { cause: new Error('EIO') });

    assert.equal(formatConfigError(error), 'config error: cannot read a.yaml: EIO');
  });
});

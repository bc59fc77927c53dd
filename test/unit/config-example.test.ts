import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { buildConfigJsonSchema, renderConfigJsonSchema } from '../../src/config/json-schema.ts';
import { loadConfig } from '../../src/config/load-config.ts';

const EXAMPLE = fileURLToPath(new URL('../../config/agent.example.yaml', import.meta.url));
const SCHEMA_JSON = fileURLToPath(new URL('../../config/schema.json', import.meta.url));

/** Collects every property name that a JSON Schema declares, at any depth. */
function collectPropertyNames(schema: unknown, names: Set<string>): Set<string> {
  if (Array.isArray(schema)) {
    for (const item of schema) {
      collectPropertyNames(item, names);
    }
  } else if (typeof schema === 'object' && schema !== null) {
    for (const [key, value] of Object.entries(schema)) {
      if (key === 'properties' && typeof value === 'object' && value !== null) {
        for (const name of Object.keys(value)) {
          names.add(name);
        }
      }
      if (key !== 'default') {
        collectPropertyNames(value, names);
      }
    }
  }
  return names;
}

describe('config example', () => {
  let credentialsDir: string;

  before(async () => {
    credentialsDir = await mkdtemp(join(tmpdir(), 'config-example-'));
    await writeFile(join(credentialsDir, 'api_key'), 'example-key-0123456789\n');
  });

  after(async () => {
    await rm(credentialsDir, { recursive: true, force: true });
  });

  it('validates with env set', async () => {
    // The example's WAV path stands for a file on the operator's host.
    const config = await loadConfig(
      EXAMPLE,
      { MODULATE_ACCOUNT_ID: 'acct-example', CREDENTIALS_DIRECTORY: credentialsDir },
      { checkSourceFiles: false },
    );
    const sources = config.jobs.flatMap((job) => job.streams.map((stream) => stream.source));

    assert.equal(config.api.account_id, 'acct-example');
    assert.equal(config.api.api_key, 'example-key-0123456789');
    assert.deepEqual(sources.map((source) => source.type).sort(), ['device', 'file', 'rtp', 'tone']);
    for (const source of sources) {
      if (source.type === 'rtp') {
        assert.match(source.listen, /^127\.0\.0\.1:\d+$/);
      }
    }
  });

  it('documents every schema key', async () => {
    const text = await readFile(EXAMPLE, 'utf8');
    const names = collectPropertyNames(buildConfigJsonSchema(), new Set());
    const missing = [...names].filter((name) => !new RegExp(`^\\s*(# )?(- )?${name}:`, 'm').test(text));

    assert.ok(names.size > 50, `expected the schema to declare many keys, found ${names.size}`);
    assert.deepEqual(missing, [], `keys missing from config/agent.example.yaml: ${missing.join(', ')}`);
  });

  it('points editors at the schema', async () => {
    const text = await readFile(EXAMPLE, 'utf8');

    assert.equal(text.split('\n')[0], '# yaml-language-server: $schema=./schema.json');
  });
});

describe('config JSON Schema', () => {
  it('matches config/schema.json', async () => {
    const written = await readFile(SCHEMA_JSON, 'utf8');

    assert.ok(
      written === renderConfigJsonSchema(),
      'config/schema.json is stale: run `npm run schema` and commit the result',
    );
  });

  it('describes the input form', () => {
    const schema = buildConfigJsonSchema() as {
      required: string[];
      properties: { api: { required: string[] }; service: { default: unknown } };
    };

    assert.deepEqual(schema.required, ['api', 'jobs']);
    assert.deepEqual(schema.properties.api.required, ['account_id']);
    assert.ok(schema.properties.service.default !== undefined);
  });
});

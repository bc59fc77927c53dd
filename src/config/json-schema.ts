/**
 * JSON Schema of the config file, generated from the zod schema so that keys,
 * types and defaults match what the agent accepts. Refinements (sample rates
 * aside) and cross-key rules such as unique aliases are checked by the agent
 * only. Editors use the schema through the `# yaml-language-server: $schema=...`
 * line of a config file.
 */
import { z } from 'zod';

import { configSchema } from './schema.ts';

/**
 * Builds the JSON Schema (draft 2020-12) of the config as written in the
 * file: keys that have defaults are optional. `${VAR}` references are
 * expanded before validation, so an editor may flag a reference that stands
 * for a number; the agent itself accepts it.
 */
export function buildConfigJsonSchema(): object {
  const schema = z.toJSONSchema(configSchema, { io: 'input', target: 'draft-2020-12' });
  return {
    ...schema,
    title: 'modulate-agent config',
    description: 'Config file of modulate-agent, the daemon that streams live voice into Modulate realtime jobs.',
  };
}

/** Renders the schema as the text of `config/schema.json`: two-space JSON with a final newline. */
export function renderConfigJsonSchema(): string {
  return `${JSON.stringify(buildConfigJsonSchema(), null, 2)}\n`;
}

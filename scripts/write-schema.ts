/**
 * Writes config/schema.json from the zod schema. Run it with `npm run schema`
 * after every change to src/config/schema.ts; a unit test fails while the
 * file is stale.
 */
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import { renderConfigJsonSchema } from '../src/config/json-schema.ts';

const target = fileURLToPath(new URL('../config/schema.json', import.meta.url));
await writeFile(target, renderConfigJsonSchema());
process.stdout.write(`wrote ${target}\n`);

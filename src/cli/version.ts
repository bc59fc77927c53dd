import { readFileSync } from 'node:fs';

/** Version from package.json, read once; the built CLI sits two folders below it. */
export const AGENT_VERSION: string = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

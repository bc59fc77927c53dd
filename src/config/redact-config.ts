/**
 * A copy of the effective config that is safe to print or log.
 */
import type { AgentConfig } from './types.ts';

export const REDACTED = '[redacted]';

/** Replaces the user info of a URL (`https://user:password@host`), which may hold a credential. */
function redactUrlCredentials(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return url;
  }
  if (parsed.username === '' && parsed.password === '') {
    return url;
  }
  return `${parsed.protocol}//${REDACTED}@${parsed.host}${parsed.pathname}${parsed.search}${parsed.hash}`;
}

/** Copies `value`, replacing every occurrence of `secret` inside strings. */
function scrubSecret(value: unknown, secret: string): unknown {
  if (typeof value === 'string') {
    return value.includes(secret) ? value.replaceAll(secret, REDACTED) : value;
  }
  if (Array.isArray(value)) {
    return value.map((item) => scrubSecret(item, secret));
  }
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, scrubSecret(item, secret)]));
  }
  return value;
}

/**
 * Returns a plain-object copy of `config` with `api.api_key` replaced by
 * `[redacted]`. The key is also scrubbed from every other string, such as a
 * `create_body` field or a URL it was pasted into by mistake, and URL user
 * info is replaced, so no part of a credential reaches the output.
 */
export function redactConfig(config: AgentConfig): unknown {
  const apiKey = config.api.api_key;
  const copy = {
    file: config.file,
    api: { ...config.api, api_key: '', base_url: redactUrlCredentials(config.api.base_url) },
    jobs: config.jobs,
    service: config.service,
  };
  const scrubbed = (apiKey === '' ? structuredClone(copy) : scrubSecret(copy, apiKey)) as typeof copy;
  scrubbed.api.api_key = REDACTED;
  return scrubbed;
}

/**
 * `${VAR}` and `${VAR:-default}` references in config values, expanded from
 * the environment after YAML parsing so that YAML quoting is never disturbed.
 *
 * Rules:
 * - Only string values are expanded, never keys.
 * - `${VAR:-default}` uses the default when VAR is unset or empty, as in POSIX sh.
 * - `$${VAR}` is a literal `${VAR}`.
 * - An unquoted (plain) value is typed again after expansion, as if the text
 *   had been written there: `frame_ms: ${FRAME_MS}` with FRAME_MS=20 is the
 *   number 20. A quoted or `!!str`-tagged value stays a string:
 *   `account_id: "${ACCOUNT}"`.
 */
import { isAlias, isMap, isScalar, isSeq, type Document, type Scalar } from 'yaml';

import type { KeyPath } from './yaml-locations.ts';

const REFERENCE = /^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$/s;

export interface ExpansionResult {
  value: string;
  /** True when the text held at least one `${...}` or `$${...}`. */
  changed: boolean;
  /** One message per reference that could not be expanded. */
  problems: string[];
}

/** Builds the message for an unset variable; secrets get advice that fits secrets. */
function unsetVariableMessage(name: string, keyPath: KeyPath): string {
  const key = keyPath[keyPath.length - 1];
  if (key === 'api_key') {
    return (
      `environment variable ${name} is not set; set ${name} in the environment ` +
      '(under systemd: Environment= or EnvironmentFile=), or read the key from a file with api_key_file'
    );
  }
  return (
    `environment variable ${name} is not set; ` +
    `set ${name} in the environment or give a default: \${${name}:-value}`
  );
}

/** Expands every reference in `text`; `keyPath` only shapes the messages. */
export function expandEnvReferences(text: string, env: NodeJS.ProcessEnv, keyPath: KeyPath = []): ExpansionResult {
  const problems: string[] = [];
  let value = '';
  let changed = false;
  let index = 0;

  while (index < text.length) {
    if (text.startsWith('$${', index)) {
      value += '${';
      index += 3;
      changed = true;
      continue;
    }
    if (!text.startsWith('${', index)) {
      value += text[index];
      index += 1;
      continue;
    }

    changed = true;
    const close = text.indexOf('}', index + 2);
    if (close === -1) {
      problems.push(`unterminated reference "${text.slice(index)}"; close it with }, or write $\${ for a literal \${`);
      value += text.slice(index);
      break;
    }
    const inner = text.slice(index + 2, close);
    index = close + 1;

    const match = REFERENCE.exec(inner);
    if (match === null) {
      problems.push(
        `invalid reference "\${${inner}}"; write \${NAME} or \${NAME:-default} with NAME of A-Z a-z 0-9 _, ` +
          `or $\${...} for a literal`,
      );
      continue;
    }
    const name = match[1] as string;
    const fallback = match[2];
    const found = env[name];
    if (fallback !== undefined) {
      value += found === undefined || found === '' ? fallback : found;
    } else if (found === undefined) {
      problems.push(unsetVariableMessage(name, keyPath));
    } else {
      value += found;
    }
  }

  return { value, changed, problems };
}

/**
 * Types an expanded plain scalar as the YAML 1.2 core schema would: decimal
 * integers, floats and booleans. Null forms stay strings so that an empty
 * default never turns a key into `null` by surprise.
 */
function retypePlainScalar(text: string): string | number | boolean {
  if (/^[-+]?[0-9]+$/.test(text) || /^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/.test(text)) {
    return Number(text);
  }
  if (/^(true|True|TRUE)$/.test(text)) {
    return true;
  }
  if (/^(false|False|FALSE)$/.test(text)) {
    return false;
  }
  return text;
}

export interface InterpolationProblem {
  keyPath: KeyPath;
  message: string;
  node: Scalar;
}

/**
 * Expands references in every string value of the document, in place, and
 * returns the problems found. Alias nodes are skipped because their anchor
 * is expanded where it is defined.
 */
export function interpolateDocument(doc: Document, env: NodeJS.ProcessEnv): InterpolationProblem[] {
  const problems: InterpolationProblem[] = [];

  const walk = (node: unknown, keyPath: KeyPath): void => {
    if (isAlias(node)) {
      return;
    }
    if (isMap(node)) {
      for (const pair of node.items) {
        const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
        walk(pair.value, [...keyPath, key]);
      }
      return;
    }
    if (isSeq(node)) {
      node.items.forEach((item, index) => walk(item, [...keyPath, index]));
      return;
    }
    if (!isScalar(node) || typeof node.value !== 'string') {
      return;
    }
    const result = expandEnvReferences(node.value, env, keyPath);
    for (const message of result.problems) {
      problems.push({ keyPath, message, node });
    }
    if (result.changed && result.problems.length === 0) {
      // An explicit tag (`!!str ${X}`) fixes the type, as it would for literal text.
      const retype = node.type === 'PLAIN' && node.tag === undefined;
      node.value = retype ? retypePlainScalar(result.value) : result.value;
    }
  };

  walk(doc.contents, []);
  return problems;
}

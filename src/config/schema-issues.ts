/**
 * Validates the loaded YAML object with the zod schema and turns each zod
 * issue into a located, plain-words problem. Messages the schema sets itself
 * (custom refinements and regex messages) are kept; zod's generic ones are
 * replaced by the error map below.
 */
import { z } from 'zod';
import type { Document, LineCounter } from 'yaml';

import type { ConfigProblem } from './config-validation-error.ts';
import { configSchema, type RawConfig } from './schema.ts';
import { formatKeyPath, locateKeyPath, type KeyPath } from './yaml-locations.ts';

const MAX_VALUE_CHARS = 60;

/** True for key paths whose values must never appear in a message. */
function isSecretPath(path: readonly PropertyKey[]): boolean {
  return path[path.length - 1] === 'api_key';
}

/** Describes an input value for a message: strings quoted and cut, collections by kind. */
export function describeValue(value: unknown): string {
  if (value === undefined) {
    return 'nothing';
  }
  if (value === null) {
    return 'an empty value (null)';
  }
  if (typeof value === 'string') {
    const text = value.length > MAX_VALUE_CHARS ? `${value.slice(0, MAX_VALUE_CHARS)}...` : value;
    return JSON.stringify(text);
  }
  if (Array.isArray(value)) {
    return 'a list';
  }
  if (typeof value === 'object') {
    return 'a mapping';
  }
  return String(value);
}

const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  object: 'a mapping of keys to values',
  record: 'a mapping of keys to values',
  array: 'a list',
};

function describeType(expected: string): string {
  return TYPE_NAMES[expected] ?? expected;
}

function listValues(values: readonly unknown[]): string {
  return values.map((value) => (typeof value === 'string' ? value : String(value))).join(', ');
}

/** Message for a value of the wrong type, with a hint for the quoting mistakes YAML invites. */
function wrongTypeMessage(expected: string, input: unknown): string {
  if (input === undefined) {
    return 'required key is missing';
  }
  let message = `must be ${describeType(expected)}, got ${describeValue(input)}`;
  if ((expected === 'number' || expected === 'int') && typeof input === 'string' && /^\s*[-+.\d]/.test(input)) {
    message += ' (a quoted value is a string in YAML; remove the quotes)';
  } else if (expected === 'string' && (typeof input === 'number' || typeof input === 'boolean')) {
    message += ' (put the value in quotes to make it a string)';
  }
  return message;
}

function sizeMessage(issue: z.core.$ZodRawIssue, bound: 'min' | 'max'): string {
  const origin = String(issue.origin);
  const limit = Number(bound === 'min' ? issue.minimum : issue.maximum);
  const inclusive = issue.inclusive !== false;
  if (origin === 'string') {
    if (bound === 'min' && limit === 1) {
      return 'must not be empty';
    }
    return `must be ${bound === 'min' ? 'at least' : 'at most'} ${limit} characters long`;
  }
  if (origin === 'array' || origin === 'set') {
    const items = limit === 1 ? 'item' : 'items';
    return `must have ${bound === 'min' ? 'at least' : 'at most'} ${limit} ${items}`;
  }
  let relation: string;
  if (bound === 'min') {
    relation = inclusive ? `at least ${limit}` : `greater than ${limit}`;
  } else {
    relation = inclusive ? `at most ${limit}` : `less than ${limit}`;
  }
  return `must be ${relation}`;
}

function unionMessage(issue: z.core.$ZodRawIssue<z.core.$ZodIssueInvalidUnion>): string {
  const discriminator = issue.discriminator;
  const options = issue.options;
  if (discriminator !== undefined && Array.isArray(options)) {
    const input = issue.input as Record<string, unknown> | undefined;
    const found = typeof input === 'object' && input !== null ? input[discriminator] : undefined;
    const allowed = listValues(options);
    if (found === undefined) {
      return `required key is missing; set it to one of ${allowed}`;
    }
    return `must be one of ${allowed}, got ${describeValue(found)}`;
  }
  // A plain union such as `device: string | integer`: name what each option expected.
  const expected = new Set<string>();
  for (const branch of issue.errors) {
    const first = branch[0];
    if (first?.code === 'invalid_type') {
      expected.add(describeType(first.expected));
    }
  }
  if (expected.size === 0) {
    return `is invalid, got ${describeValue(issue.input)}`;
  }
  return `must be ${[...expected].join(' or ')}, got ${describeValue(issue.input)}`;
}

/** Message for one raw issue, without the got-value part where that value is a secret. */
function describeIssue(issue: z.core.$ZodRawIssue, allowedKeys: Map<string, string[]>): string {
  const path = issue.path ?? [];
  const secret = isSecretPath(path);
  const got = (message: string): string => (secret ? message : `${message}, got ${describeValue(issue.input)}`);

  switch (issue.code) {
    case 'invalid_type':
      if (path.length === 0) {
        return issue.input === null || issue.input === undefined
          ? 'the config is empty; it needs at least the keys api and jobs'
          : `the config must be a mapping with the keys api and jobs, got ${describeValue(issue.input)}`;
      }
      return secret ? `must be ${describeType(issue.expected)}` : wrongTypeMessage(issue.expected, issue.input);
    case 'too_small':
    case 'too_big': {
      // Numbers are echoed; strings and lists are described by their size alone.
      const message = sizeMessage(issue, issue.code === 'too_small' ? 'min' : 'max');
      return issue.origin === 'number' || issue.origin === 'int' ? got(message) : message;
    }
    case 'invalid_value':
      return issue.values.length === 1
        ? got(`must be ${listValues(issue.values)}`)
        : got(`must be one of ${listValues(issue.values)}`);
    case 'invalid_format':
      switch (issue.format) {
        case 'url':
          return got('must be an http:// or https:// URL');
        case 'regex':
          return got(`must match the pattern ${String(issue.pattern)}`);
        case 'includes':
          return got(`must contain "${String(issue.includes)}"`);
        default:
          return got(`must be a valid ${issue.format}`);
      }
    case 'not_multiple_of':
      return got(`must be a multiple of ${issue.divisor}`);
    case 'unrecognized_keys': {
      const schema = issue.inst;
      if (schema instanceof z.ZodObject) {
        allowedKeys.set(formatKeyPath(path), Object.keys(schema.shape));
      }
      return 'unknown key';
    }
    case 'invalid_union':
      return unionMessage(issue);
    case 'invalid_key':
      return `invalid key: ${issue.issues[0]?.message ?? 'not allowed here'}`;
    case 'invalid_element':
      return 'invalid element';
    case 'custom':
      return 'is invalid';
  }
  return 'is invalid';
}

/** Levenshtein distance, for "did you mean" on misspelt keys. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i += 1) {
    const current = [i];
    for (let j = 1; j <= b.length; j += 1) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

function unknownKeyMessage(key: string, allowed: readonly string[] | undefined): string {
  if (allowed === undefined) {
    return `unknown key "${key}"`;
  }
  const closest = allowed
    .map((candidate) => ({ candidate, distance: editDistance(key, candidate) }))
    .sort((left, right) => left.distance - right.distance)[0];
  const hint =
    closest !== undefined && closest.distance <= Math.max(1, Math.floor(key.length / 3))
      ? ` (did you mean "${closest.candidate}"?)`
      : '';
  return `unknown key "${key}"${hint}; allowed keys: ${allowed.join(', ')}`;
}

export type SchemaValidation = { ok: true; config: RawConfig } | { ok: false; problems: ConfigProblem[] };

/**
 * Validates `data` (the YAML document as plain objects) against the config
 * schema and locates each issue in `doc`.
 */
export function validateConfigObject(data: unknown, doc: Document, lineCounter: LineCounter): SchemaValidation {
  const allowedKeys = new Map<string, string[]>();
  const result = configSchema.safeParse(data, {
    error: (issue) => describeIssue(issue, allowedKeys),
  });
  if (result.success) {
    return { ok: true, config: result.data };
  }

  const problems: ConfigProblem[] = [];
  const add = (path: KeyPath, message: string, atKey: boolean): void => {
    const position = locateKeyPath(doc, lineCounter, path, { atKey });
    problems.push({ keyPath: formatKeyPath(path), message, line: position?.line, column: position?.column });
  };

  for (const issue of result.error.issues) {
    if (issue.code === 'unrecognized_keys') {
      const allowed = allowedKeys.get(formatKeyPath(issue.path));
      for (const key of issue.keys) {
        add([...issue.path, key], unknownKeyMessage(key, allowed), true);
      }
    } else if (issue.code === 'invalid_key') {
      add(issue.path, issue.message, true);
    } else {
      add(issue.path, issue.message, false);
    }
  }
  return { ok: false, problems };
}

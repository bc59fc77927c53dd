/**
 * Loads the agent's YAML config: parse with source positions, expand
 * `${VAR}` references, validate with the schema, resolve relative paths,
 * merge defaults into streams, check cross-key rules and read the API key.
 * Every stage reports all of its problems at once in one
 * `ConfigValidationError`, each with the file, line, column and key path.
 */
import { constants } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

import { LineCounter, parseDocument, type Document, type YAMLError } from 'yaml';

import { ConfigError } from '../errors.ts';
import { ConfigValidationError, type ConfigProblem } from './config-validation-error.ts';
import { interpolateDocument } from './interpolate-env.ts';
import { checkApiKeyText, readApiKeyFile, readSecretFileFromDisk, type ReadSecretFile } from './read-api-key.ts';
import { checkResolvedJobs, mergeJobs, resolveRelativePaths } from './resolve-streams.ts';
import { validateConfigObject } from './schema-issues.ts';
import type { AgentConfig, JobConfig } from './types.ts';
import { formatKeyPath, locateKeyPath, type KeyPath } from './yaml-locations.ts';

export interface ParseConfigOptions {
  /** Path of the config file: named in messages, and the base of relative paths. */
  file?: string;
  /** Variables for `${VAR}` references; `process.env` when omitted. */
  env?: NodeJS.ProcessEnv;
  /** Reads `api_key_file`; reads from disk when omitted. */
  readSecretFile?: ReadSecretFile;
  /** Folder that relative paths are resolved against; the file's folder, else the working folder. */
  baseDir?: string;
  /** Checks that every file source can be read, so a wrong path fails before any job is created. */
  checkSourceFiles?: boolean;
}

/** Aliases (`*name`) that a config may expand; a guard against "billion laughs" documents. */
const MAX_ALIAS_COUNT = 100;

/** Turns a YAML parse error into a problem; the position moves from the message into the location. */
function yamlErrorProblem(error: YAMLError): ConfigProblem {
  const position = error.linePos?.[0];
  let message = (error.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
  if (error.code === 'MULTIPLE_DOCS') {
    message = 'the config must be a single YAML document; remove the extra "---" document separator';
  }
  return { keyPath: '', message: `invalid YAML: ${message}`, line: position?.line, column: position?.col };
}

function describeFileError(file: string, error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const detail = error instanceof Error ? error.message : String(error);
  switch (code) {
    case 'ENOENT':
      return `config file ${file} not found (${detail}); check the path`;
    case 'EACCES':
    case 'EPERM':
      return `cannot read config file ${file}: permission denied (${detail}); make it readable by the agent's user`;
    case 'EISDIR':
      return `config file ${file} is a directory (${detail}); pass the path of the YAML file`;
    default:
      return `cannot read config file ${file}: ${detail}`;
  }
}

/**
 * Parses and validates config text. Throws `ConfigValidationError` (a
 * `ConfigError`) listing every problem found.
 */
export async function parseConfigText(text: string, options: ParseConfigOptions = {}): Promise<AgentConfig> {
  const file = options.file;
  const env = options.env ?? process.env;
  const baseDir = options.baseDir ?? (file === undefined ? process.cwd() : dirname(resolve(file)));

  const lineCounter = new LineCounter();
  // `merge: true` accepts YAML merge keys (`<<: *anchor`), which operators use to share blocks.
  const doc: Document = parseDocument(text, { lineCounter, prettyErrors: true, merge: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigValidationError(file, doc.errors.map(yamlErrorProblem));
  }

  const locate = (keyPath: KeyPath, message: string): ConfigProblem => {
    const position = locateKeyPath(doc, lineCounter, keyPath);
    return { keyPath: formatKeyPath(keyPath), message, line: position?.line, column: position?.column };
  };

  const interpolationProblems = interpolateDocument(doc, env);
  if (interpolationProblems.length > 0) {
    throw new ConfigValidationError(
      file,
      interpolationProblems.map((problem) => {
        const offset = problem.node.range?.[0];
        const position = offset === undefined ? undefined : lineCounter.linePos(offset);
        return {
          keyPath: formatKeyPath(problem.keyPath),
          message: problem.message,
          line: position?.line,
          column: position?.col,
        };
      }),
    );
  }

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    throw new ConfigValidationError(file, [{ keyPath: '', message: `cannot expand YAML aliases: ${detail}` }]);
  }

  const validation = validateConfigObject(data, doc, lineCounter);
  if (!validation.ok) {
    throw new ConfigValidationError(file, validation.problems);
  }

  const raw = resolveRelativePaths(validation.config, baseDir);
  const jobs = mergeJobs(raw);
  const problems = checkResolvedJobs(raw, jobs).map((problem) => locate(problem.keyPath, problem.message));
  if (options.checkSourceFiles === true) {
    const fileProblems = await checkSourceFiles(jobs);
    problems.push(...fileProblems.map((problem) => locate(problem.keyPath, problem.message)));
  }

  let apiKey = '';
  if (raw.api.api_key_file !== undefined) {
    const result = await readApiKeyFile(raw.api.api_key_file, options.readSecretFile ?? readSecretFileFromDisk);
    if (result.ok) {
      apiKey = result.apiKey;
    } else {
      problems.push(locate(['api', 'api_key_file'], result.message));
    }
  } else if (raw.api.api_key !== undefined) {
    apiKey = raw.api.api_key;
    const problem = checkApiKeyText(apiKey, 'api_key');
    if (problem !== undefined) {
      problems.push(locate(['api', 'api_key'], problem));
    }
  }

  if (problems.length > 0) {
    throw new ConfigValidationError(file, problems);
  }

  const { api_key: _inlineKey, api_key_file: _keyFile, ...api } = raw.api;
  return {
    file: file === undefined ? undefined : resolve(file),
    api: { ...api, api_key: apiKey },
    jobs,
    service: raw.service,
  };
}

/** Finds file sources whose file is missing, unreadable or not a regular file. */
async function checkSourceFiles(jobs: readonly JobConfig[]): Promise<Array<{ keyPath: KeyPath; message: string }>> {
  const problems: Array<{ keyPath: KeyPath; message: string }> = [];
  for (const [jobIndex, job] of jobs.entries()) {
    for (const [streamIndex, stream] of job.streams.entries()) {
      if (stream.source.type !== 'file') {
        continue;
      }
      const { path } = stream.source;
      const keyPath: KeyPath = ['jobs', jobIndex, 'streams', streamIndex, 'source', 'path'];
      try {
        await access(path, constants.R_OK);
        if (!(await stat(path)).isFile()) {
          problems.push({ keyPath, message: `${path} is not a regular file; give the path of a WAV file` });
        }
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        problems.push({
          keyPath,
          message:
            code === 'ENOENT'
              ? `file ${path} not found; check the path (relative paths start from the config file's folder)`
              : `cannot read file ${path} (${code ?? String(error)}); make it readable by the agent's user`,
        });
      }
    }
  }
  return problems;
}

/**
 * Reads, parses and validates the config file at `file`. Throws
 * `ConfigError` when the file cannot be read and `ConfigValidationError`
 * for problems in its content.
 */
export async function loadConfig(
  file: string,
  env: NodeJS.ProcessEnv = process.env,
  options: Omit<ParseConfigOptions, 'file' | 'env'> = {},
): Promise<AgentConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new ConfigError(describeFileError(file, error), { file, cause: error });
  }
  return parseConfigText(text, { checkSourceFiles: true, ...options, file, env });
}

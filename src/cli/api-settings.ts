/**
 * API settings of the commands that call the Jobs API directly (`jobs`,
 * `submit`). They come from one of two places:
 *
 * - `--config FILE`: the agent's config, or a file with only its `api`
 *   section. Only `api` is read and validated, so the command talks to the
 *   account the daemon uses even when another section has a problem;
 * - otherwise flags and the environment: `--base-url` or `MODULATE_BASE_URL`
 *   (default https://api.modulate.ai), `--account-id` or `MODULATE_ACCOUNT_ID`,
 *   and the key from `--api-key-file`, `MODULATE_API_KEY_FILE` or
 *   `MODULATE_API_KEY`. The key is never a flag, because other users can read
 *   a process's arguments.
 */
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';

import { parseDocument } from 'yaml';

import { interpolateDocument } from '../config/interpolate-env.ts';
import { checkApiKeyText, readApiKeyFile, readSecretFileFromDisk } from '../config/read-api-key.ts';
import { apiSchema } from '../config/schema.ts';
import { AgentError, EXIT_CONFIG, JobsApiError } from '../errors.ts';
import { JobsClient } from '../jobs/jobs-client.ts';
import { DEFAULT_BASE_URL } from '../jobs/protocol.ts';
import type { Logger } from '../logger.ts';
import { EXIT_FAILURE } from '../service/agent.ts';

export interface ApiSettingsArgs {
  config?: string;
  baseUrl?: string;
  accountId?: string;
  apiKeyFile?: string;
}

export interface ApiSettings {
  baseUrl: string;
  accountId: string;
  apiKey: string;
  auth: 'basic' | 'query';
  requestTimeoutMs: number;
}

/** A command failure with the message to print and the exit code. */
export class CommandError extends AgentError {
  readonly exitCode: number;

  constructor(message: string, exitCode: number, options: { cause?: unknown } = {}) {
    super('ERR_COMMAND', message, options);
    this.exitCode = exitCode;
  }
}

const SETTINGS_HINT =
  'pass --config with the agent\'s config, or set MODULATE_ACCOUNT_ID and MODULATE_API_KEY_FILE (or MODULATE_API_KEY)';

/**
 * Resolves the API settings from `--config`, or from flags and the environment.
 *
 * @throws CommandError with exit code 78 (EX_CONFIG) when settings are missing or invalid.
 */
export async function resolveApiSettings(args: ApiSettingsArgs, env: NodeJS.ProcessEnv = process.env): Promise<ApiSettings> {
  if (args.config !== undefined) {
    if (args.baseUrl !== undefined || args.accountId !== undefined || args.apiKeyFile !== undefined) {
      throw new CommandError('--config sets the API settings; drop --base-url, --account-id and --api-key-file, or drop --config', EXIT_CONFIG);
    }
    return loadApiSection(args.config, env);
  }

  const baseUrl = args.baseUrl ?? nonEmpty(env['MODULATE_BASE_URL']) ?? DEFAULT_BASE_URL;
  if (!/^https?:\/\/[^/\s]+/.test(baseUrl)) {
    throw new CommandError(`base URL ${JSON.stringify(baseUrl)} is invalid; give an http or https URL such as ${DEFAULT_BASE_URL}`, EXIT_CONFIG);
  }
  const accountId = args.accountId ?? nonEmpty(env['MODULATE_ACCOUNT_ID']);
  if (accountId === undefined) {
    throw new CommandError(`no account ID: ${SETTINGS_HINT}`, EXIT_CONFIG);
  }
  const keyFile = args.apiKeyFile ?? nonEmpty(env['MODULATE_API_KEY_FILE']);
  let apiKey: string;
  if (keyFile !== undefined) {
    const result = await readApiKeyFile(keyFile, readSecretFileFromDisk);
    if (!result.ok) {
      throw new CommandError(result.message, EXIT_CONFIG);
    }
    apiKey = result.apiKey;
  } else {
    const fromEnv = env['MODULATE_API_KEY'];
    if (fromEnv === undefined) {
      throw new CommandError(`no API key: ${SETTINGS_HINT}`, EXIT_CONFIG);
    }
    const problem = checkApiKeyText(fromEnv, 'MODULATE_API_KEY');
    if (problem !== undefined) {
      throw new CommandError(problem, EXIT_CONFIG);
    }
    apiKey = fromEnv;
  }
  return { baseUrl, accountId, apiKey, auth: 'basic', requestTimeoutMs: 10_000 };
}

/**
 * Reads the `api` section of a config file: `${VAR}` references expanded,
 * validated with the agent's schema, `api_key_file` resolved against the
 * file's folder and read.
 */
async function loadApiSection(file: string, env: NodeJS.ProcessEnv): Promise<ApiSettings> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new CommandError(`cannot read config file ${file}: ${(error as Error).message}; check the path`, EXIT_CONFIG);
  }

  const doc = parseDocument(text);
  if (doc.errors.length > 0) {
    throw new CommandError(`${file}: invalid YAML: ${doc.errors[0]?.message.split('\n')[0] ?? ''}`, EXIT_CONFIG);
  }

  const problems = interpolateDocument(doc, env).filter((problem) => problem.keyPath[0] === 'api');
  if (problems.length > 0) {
    throw new CommandError(problems.map((problem) => `${file}: ${problem.keyPath.join('.')}: ${problem.message}`).join('\n'), EXIT_CONFIG);
  }

  const parsed = apiSchema.safeParse((doc.toJS() as { api?: unknown } | null)?.api);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => `${file}: api${issue.path.map((key) => `.${String(key)}`).join('')}: ${issue.message}`);
    throw new CommandError(lines.join('\n'), EXIT_CONFIG);
  }

  const api = parsed.data;
  let apiKey: string;
  if (api.api_key_file !== undefined) {
    const keyFile = isAbsolute(api.api_key_file) ? api.api_key_file : resolve(dirname(resolve(file)), api.api_key_file);
    const result = await readApiKeyFile(keyFile, readSecretFileFromDisk);
    if (!result.ok) {
      throw new CommandError(`${file}: api.api_key_file: ${result.message}`, EXIT_CONFIG);
    }
    apiKey = result.apiKey;
  } else {
    apiKey = api.api_key ?? '';
    const problem = checkApiKeyText(apiKey, 'api.api_key');
    if (problem !== undefined) {
      throw new CommandError(`${file}: ${problem}`, EXIT_CONFIG);
    }
  }

  return {
    baseUrl: api.base_url,
    accountId: api.account_id,
    apiKey,
    auth: api.auth,
    requestTimeoutMs: api.request_timeout_ms,
  };
}

/** Creates a client for a command: fewer retries than the daemon, so that a wrong URL fails in seconds. */
export function createCommandClient(settings: ApiSettings, logger: Logger): JobsClient {
  return new JobsClient({
    baseUrl: settings.baseUrl,
    accountId: settings.accountId,
    apiKey: settings.apiKey,
    auth: settings.auth,
    requestTimeoutMs: settings.requestTimeoutMs,
    retries: 2,
    logger,
  });
}

/**
 * Turns an API failure into the message a command prints: a 404 names the
 * job and how to list jobs, 401 and 403 exit with 78 (EX_CONFIG).
 */
export function describeApiFailure(error: unknown, jobId?: string): CommandError {
  if (error instanceof CommandError) {
    return error;
  }
  if (error instanceof JobsApiError) {
    if (error.statusCode === 404 && jobId !== undefined) {
      return new CommandError(`job ${jobId} not found; list jobs with modulate-agent jobs list`, EXIT_FAILURE, { cause: error });
    }
    if (error.statusCode === 401 || error.statusCode === 403) {
      return new CommandError(error.message, EXIT_CONFIG, { cause: error });
    }
    return new CommandError(error.message, EXIT_FAILURE, { cause: error });
  }
  return new CommandError(error instanceof Error ? error.message : String(error), EXIT_FAILURE, { cause: error });
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

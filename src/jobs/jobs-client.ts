import pRetry, { AbortError } from 'p-retry';

import { sleep } from '../clock.ts';
import { JobsApiError } from '../errors.ts';
import { createSilentLogger, type Logger } from '../logger.ts';
import {
  API_KEY_QUERY_PARAM,
  FINALIZE_BODY,
  JOBS_PATH,
  MEDIA_FILE_PART,
  MEDIA_TYPE,
  buildStreamQuery,
  isRetryableHttpStatus,
  jobPath,
  mediaFilesPath,
  parseErrorBody,
  parseRetryAfterMs,
  resultsPath,
  streamPath,
  type CreateJobBody,
  type Job,
  type Page,
  type Result,
  type StreamQuery,
} from './protocol.ts';

export interface JobsClientOptions {
  baseUrl: string;
  accountId: string;
  apiKey: string;
  /** `basic` sends the Authorization header on stream upgrades too; `query` puts the key in the upgrade URL. */
  auth?: 'basic' | 'query';
  requestTimeoutMs?: number;
  /** Retries after the first attempt for network errors, 429 and 5xx. */
  retries?: number;
  logger?: Logger;
}

export interface MediaFile {
  name: string;
  data: Uint8Array;
  contentType?: string;
}

/** URL and headers of one realtime stream. `logUrl` has no query string, so it is safe to log. */
export interface StreamEndpoint {
  url: string;
  logUrl: string;
  headers: Record<string, string>;
}

interface RequestOptions {
  body?: unknown;
  form?: FormData;
  signal?: AbortSignal | undefined;
}

/**
 * Client of the Jobs API: HTTP Basic auth, the vendor media type, typed
 * errors, and retries with backoff on network errors, 429 and 5xx.
 */
export class JobsClient {
  readonly baseUrl: string;
  private readonly authorization: string;
  private readonly options: Required<Omit<JobsClientOptions, 'logger'>>;
  private readonly log: Logger;

  constructor(options: JobsClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.options = {
      auth: 'basic',
      requestTimeoutMs: 10_000,
      retries: 4,
      ...options,
    };
    this.authorization = `Basic ${Buffer.from(`${options.accountId}:${options.apiKey}`).toString('base64')}`;
    this.log = (options.logger ?? createSilentLogger()).child({ component: 'jobs-client' });
  }

  createJob(body: CreateJobBody, signal?: AbortSignal): Promise<Job> {
    // NOTE: a retried POST after a network error or 5xx can create a second
    // job if the first request reached the server; the API has no idempotency key.
    return this.request<Job>('POST', JOBS_PATH, { body, signal });
  }

  getJob(jobId: string, signal?: AbortSignal): Promise<Job> {
    return this.request<Job>('GET', jobPath(jobId), { signal });
  }

  /** Requests finalization. Finalizing a job that is already finalizing or finalized succeeds. */
  finalizeJob(jobId: string, signal?: AbortSignal): Promise<Job> {
    return this.request<Job>('PATCH', jobPath(jobId), { body: FINALIZE_BODY, signal });
  }

  /** Lists every job, following `links.next` until the last page. */
  listJobs(options: { perPage?: number; signal?: AbortSignal } = {}): Promise<Job[]> {
    const query = options.perPage === undefined ? '' : `?per_page=${options.perPage}`;
    return this.collectPages<Job>(`${JOBS_PATH}${query}`, options.signal);
  }

  /** Fetches every result of a job, following `links.next` until the last page. */
  getResults(jobId: string, options: { perPage?: number; signal?: AbortSignal } = {}): Promise<Result[]> {
    const query = options.perPage === undefined ? '' : `?per_page=${options.perPage}`;
    return this.collectPages<Result>(`${resultsPath(jobId)}${query}`, options.signal);
  }

  /** Uploads media files to a file-based job in one multipart request. */
  uploadMediaFiles(jobId: string, files: MediaFile[], signal?: AbortSignal): Promise<unknown> {
    return this.request<unknown>('POST', mediaFilesPath(jobId), {
      signal,
      form: buildMediaForm(files),
    });
  }

  /**
   * Polls a job until its status is `finalized`, or throws when `timeoutMs` passes.
   * Returns the finalized job.
   */
  async waitForFinalized(
    jobId: string,
    options: { timeoutMs: number; intervalMs?: number; signal?: AbortSignal },
  ): Promise<Job> {
    const deadline = Date.now() + options.timeoutMs;
    let intervalMs = options.intervalMs ?? 200;
    for (;;) {
      const job = await this.getJob(jobId, options.signal);
      if (job.status === 'finalized') {
        return job;
      }
      if (Date.now() + intervalMs > deadline) {
        throw new JobsApiError(
          `job ${jobId} is still "${job.status}" after ${options.timeoutMs} ms; raise service.finalize_timeout_ms or check the job later with "modulate-agent jobs get ${jobId}"`,
          { method: 'GET', path: jobPath(jobId), retryable: true },
        );
      }
      await sleep(intervalMs, options.signal);
      intervalMs = Math.min(intervalMs * 2, 2000);
    }
  }

  /** Builds the WebSocket URL and headers of an alias's stream. */
  streamEndpoint(jobId: string, alias: string, query: StreamQuery): StreamEndpoint {
    const wsBase = this.baseUrl.replace(/^http/, 'ws');
    const params = buildStreamQuery(query);
    const logUrl = `${wsBase}${streamPath(jobId, alias)}`;
    const headers: Record<string, string> = {};
    if (this.options.auth === 'basic') {
      headers['authorization'] = this.authorization;
    } else {
      params.set(API_KEY_QUERY_PARAM, this.options.apiKey);
    }
    return { url: `${logUrl}?${params.toString()}`, logUrl, headers };
  }

  private async collectPages<T>(firstPath: string, signal: AbortSignal | undefined): Promise<T[]> {
    const items: T[] = [];
    let pageUrl: string | undefined = `${this.baseUrl}${firstPath}`;
    const seen = new Set<string>();
    while (pageUrl !== undefined) {
      if (seen.has(pageUrl)) {
        throw new JobsApiError(`pagination loops back to ${pageUrl}; the server returned the same links.next twice`, {
          method: 'GET',
          path: new URL(pageUrl).pathname,
          retryable: false,
        });
      }
      seen.add(pageUrl);
      const page: Page<T> = await this.request<Page<T>>('GET', pageUrl, { signal });
      items.push(...page.data);
      const next = page.links?.next;
      // links.next is followed as given: absolute, or relative to the page that returned it.
      pageUrl = next === null || next === undefined || next === '' ? undefined : new URL(next, pageUrl).href;
    }
    return items;
  }

  /** Sends a request to a path under the base URL, or to an absolute URL the API returned. */
  private async request<T>(method: string, pathOrUrl: string, options: RequestOptions): Promise<T> {
    const url = new URL(/^https?:\/\//.test(pathOrUrl) ? pathOrUrl : `${this.baseUrl}${pathOrUrl}`);
    const path = url.pathname;
    return pRetry(
      async () => {
        try {
          return await this.requestOnce<T>(method, url, path, options);
        } catch (error) {
          if (error instanceof JobsApiError && !error.retryable) {
            throw new AbortError(error);
          }
          throw error;
        }
      },
      {
        retries: this.options.retries,
        minTimeout: 250,
        maxTimeout: 5000,
        randomize: true,
        ...(options.signal === undefined ? {} : { signal: options.signal }),
        onFailedAttempt: async (failure) => {
          const error = failure as unknown as JobsApiError;
          this.log.warn(
            {
              method,
              path,
              attempt: failure.attemptNumber,
              retriesLeft: failure.retriesLeft,
              statusCode: error.statusCode,
              err: failure,
            },
            'jobs api request failed',
          );
          // Retry-After sets the minimum wait; p-retry's own backoff delay follows it.
          if (error.retryAfterMs !== undefined && failure.retriesLeft > 0) {
            await sleep(error.retryAfterMs, options.signal);
          }
        },
      },
    );
  }

  private async requestOnce<T>(method: string, url: URL, path: string, options: RequestOptions): Promise<T> {
    const headers: Record<string, string> = {
      accept: `${MEDIA_TYPE}, application/json`,
      authorization: this.authorization,
    };
    let body: string | FormData | undefined;
    if (options.form !== undefined) {
      body = options.form;
    } else if (options.body !== undefined) {
      headers['content-type'] = MEDIA_TYPE;
      body = JSON.stringify(options.body);
    }
    const timeout = AbortSignal.timeout(this.options.requestTimeoutMs);
    const signal = options.signal === undefined ? timeout : AbortSignal.any([timeout, options.signal]);

    let response: Response;
    try {
      response = await fetch(url, { method, headers, body: body ?? null, signal });
    } catch (error) {
      if (options.signal?.aborted === true) {
        throw error;
      }
      const timedOut = timeout.aborted;
      throw new JobsApiError(
        timedOut
          ? `${method} ${path} timed out after ${this.options.requestTimeoutMs} ms (api.request_timeout_ms)`
          : `${method} ${path} failed: ${describeNetworkError(error)}; check api.base_url (${this.baseUrl}) and the network`,
        { method, path, retryable: true, cause: error },
      );
    }

    const text = await response.text();
    const parsed = parseJson(text);
    if (response.ok) {
      return parsed as T;
    }
    const { code, message } = parseErrorBody(parsed);
    const retryAfterMs = parseRetryAfterMs(response.headers.get('retry-after'));
    throw new JobsApiError(
      `${method} ${path} failed with ${response.status}${code === undefined ? '' : ` ${code}`}: ${message ?? (text.slice(0, 200) || response.statusText)}${hintForStatus(response.status)}`,
      {
        method,
        path,
        statusCode: response.status,
        ...(code === undefined ? {} : { apiCode: code }),
        ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
        retryable: isRetryableHttpStatus(response.status),
      },
    );
  }
}

function buildMediaForm(files: MediaFile[]): FormData {
  const form = new FormData();
  for (const file of files) {
    const blob = new Blob([file.data], { type: file.contentType ?? 'application/octet-stream' });
    form.append(MEDIA_FILE_PART, blob, file.name);
  }
  return form;
}

function parseJson(text: string): unknown {
  if (text === '') {
    return undefined;
  }
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function describeNetworkError(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code !== undefined) {
    return `${cause.code}${cause.message === undefined ? '' : ` (${cause.message})`}`;
  }
  return error instanceof Error ? error.message : String(error);
}

function hintForStatus(status: number): string {
  switch (status) {
    case 401:
      return '; check api.account_id and the API key';
    case 403:
      return '; the account is not allowed to do this or its quota is exhausted';
    case 429:
      return '; rate or concurrency limit reached';
    default:
      return '';
  }
}

/**
 * The HTTP endpoints of the Jobs API as the emulator serves them:
 *
 *   POST  /jobs                                  create a job (201)
 *   GET   /jobs                                  list jobs, cursor-paginated
 *   GET   /job/{id}                              one job
 *   PATCH /job/{id}                              {"status": "finalizing"}
 *   GET   /job/{id}/results                      results, cursor-paginated
 *   POST  /job/{id}/sources/media-files          multipart upload of file parts
 *   GET   /job/{id}/sources/streams/{alias}      WebSocket only (426 otherwise)
 *   POST  /_emulator/faults                      admin endpoint, when enabled
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { JOBS_PATH, MEDIA_FILE_PART, type Job } from '../jobs/protocol.ts';
import type { Logger } from '../logger.ts';
import { ADMIN_FAULTS_PATH, runAdminAction } from './admin-endpoint.ts';
import type { EmulatedJob, MediaFileUpload } from './emulated-job.ts';
import type { EmulatorEventLog } from './emulator-event-log.ts';
import type { EmulatorFaults } from './emulator-faults.ts';
import { EmulatorRejection } from './emulator-rejection.ts';
import {
  DEFAULT_RETRY_AFTER_SECONDS,
  checkCredentials,
  mediaTypeOf,
  parseRequestTarget,
  readBody,
  requireJsonContentType,
  sendJson,
  sendRejection,
  type Credentials,
} from './http-io.ts';
import { paginate, parsePageQuery } from './pagination.ts';
import { parseJsonBody, validateCreateJobBody, validatePatchBody, type ValidatedJobRequest } from './request-validation.ts';

export interface ApiContext {
  credentials: Credentials;
  baseUrl(): string;
  /** Jobs in creation order. */
  jobs: ReadonlyMap<string, EmulatedJob>;
  createJob(request: ValidatedJobRequest): EmulatedJob;
  faults: EmulatorFaults;
  events: EmulatorEventLog;
  log: Logger;
  adminEndpoint: boolean;
  maxJsonBodyBytes: number;
  maxUploadBytes: number;
}

/** A request path split into its decoded segments. */
type Route =
  | { name: 'jobs' }
  | { name: 'job'; jobId: string }
  | { name: 'results'; jobId: string }
  | { name: 'media-files'; jobId: string }
  | { name: 'stream'; jobId: string; alias: string }
  | { name: 'admin' };

/** Matches a path against the API's routes; undefined for any other path. */
export function matchRoute(pathname: string): Route | undefined {
  if (pathname === JOBS_PATH) {
    return { name: 'jobs' };
  }
  if (pathname === ADMIN_FAULTS_PATH) {
    return { name: 'admin' };
  }

  const segments = pathname.split('/');
  if (segments[0] !== '' || segments[1] !== 'job') {
    return undefined;
  }
  let decoded: string[];
  try {
    decoded = segments.slice(2).map((segment) => decodeURIComponent(segment));
  } catch {
    return undefined;
  }
  const [jobId, first, second, alias, ...rest] = decoded;
  if (jobId === undefined || jobId === '' || rest.length > 0) {
    return undefined;
  }

  if (first === undefined) {
    return { name: 'job', jobId };
  }
  if (first === 'results' && second === undefined) {
    return { name: 'results', jobId };
  }
  if (first === 'sources' && second === 'media-files' && alias === undefined) {
    return { name: 'media-files', jobId };
  }
  if (first === 'sources' && second === 'streams' && alias !== undefined) {
    return { name: 'stream', jobId, alias };
  }
  return undefined;
}

function methodNotAllowed(method: string, allowed: string[]): EmulatorRejection {
  return new EmulatorRejection(405, 'method_not_allowed', `method ${method} is not allowed here; use ${allowed.join(' or ')}`);
}

function requireMethod(req: IncomingMessage, allowed: string[]): void {
  if (!allowed.includes(req.method ?? '')) {
    throw methodNotAllowed(req.method ?? '', allowed);
  }
}

export function unknownJob(jobId: string): EmulatorRejection {
  return new EmulatorRejection(404, 'job_not_found', `job ${jobId} does not exist; create one with POST ${JOBS_PATH}`);
}

/** Builds the rejection of an injected fault; 429 and 503 get a `Retry-After` even when none was given. */
export function injectedRejection(status: number, retryAfterSeconds: number | undefined, target: string): EmulatorRejection {
  let retryAfter = retryAfterSeconds;
  if (retryAfter === undefined && (status === 429 || status === 503)) {
    retryAfter = DEFAULT_RETRY_AFTER_SECONDS;
  }
  let code = 'rejected';
  if (status === 429) {
    code = 'rate_limited';
  } else if (status >= 500) {
    code = 'server_error';
  }
  return new EmulatorRejection(status, code, `${target} rejected by fault injection`, retryAfter);
}

/** Serves one HTTP request. Every failure becomes an error response, or a destroyed socket once the response has started. */
export async function handleApiRequest(context: ApiContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const method = req.method ?? 'GET';
  const parsed = parseRequestTarget(req.url);
  if (parsed === undefined) {
    context.log.info({ method }, 'request rejected: invalid request target');
    sendRejection(res, new EmulatorRejection(400, 'invalid_request_target', 'request target must be a path starting with a single /'));
    return;
  }
  const url = parsed;
  res.on('finish', () => context.log.debug({ method, path: url.pathname, status: res.statusCode }, 'http request'));
  try {
    const route = matchRoute(url.pathname);
    if (route?.name === 'admin' && context.adminEndpoint) {
      checkCredentials(req.headers.authorization, context.credentials);
      await handleAdmin(context, req, res);
      return;
    }
    const injected = context.faults.takeRequestRejection();
    if (injected !== undefined) {
      context.events.record({ type: 'request_rejected', status: injected.status, detail: `${method} ${url.pathname}` });
      throw injectedRejection(injected.status, injected.retryAfterSeconds, `${method} ${url.pathname}`);
    }
    checkCredentials(req.headers.authorization, context.credentials);
    if (route === undefined || route.name === 'admin') {
      throw new EmulatorRejection(404, 'not_found', `no endpoint at ${url.pathname}`);
    }
    await dispatch(context, route, url, req, res);
  } catch (err) {
    if (res.headersSent) {
      context.log.error({ err, method, path: url.pathname }, 'request failed after its response started');
      res.destroy();
      return;
    }
    if (err instanceof EmulatorRejection) {
      context.log.info({ method, path: url.pathname, status: err.status, code: err.apiCode, message: err.message }, 'request rejected');
      if (err.status === 405) {
        sendRejection(res, err, { allow: allowedMethods(matchRoute(url.pathname)).join(', ') });
      } else {
        sendRejection(res, err);
      }
      return;
    }
    context.log.error({ err, method, path: url.pathname }, 'request failed inside the emulator');
    sendRejection(res, new EmulatorRejection(500, 'internal_error', 'the emulator failed to handle the request'));
  }
}

function allowedMethods(route: Route | undefined): string[] {
  switch (route?.name) {
    case 'jobs':
      return ['GET', 'POST'];
    case 'job':
      return ['GET', 'PATCH'];
    case 'results':
    case 'stream':
      return ['GET'];
    case 'media-files':
    case 'admin':
      return ['POST'];
    case undefined:
      return [];
  }
}

async function dispatch(context: ApiContext, route: Exclude<Route, { name: 'admin' }>, url: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const method = req.method ?? 'GET';
  requireMethod(req, allowedMethods(route));
  switch (route.name) {
    case 'jobs':
      if (method === 'POST') {
        await createJob(context, req, res);
      } else {
        listJobs(context, url, res);
      }
      return;
    case 'job': {
      const job = findJob(context, route.jobId);
      if (method === 'PATCH') {
        await patchJob(context, job, req, res);
      } else {
        sendJson(res, 200, job.toJson());
      }
      return;
    }
    case 'results':
      listResults(context, findJob(context, route.jobId), url, res);
      return;
    case 'media-files':
      await addMediaFiles(context, findJob(context, route.jobId), req, res);
      return;
    case 'stream':
      findJob(context, route.jobId);
      throw new EmulatorRejection(
        426,
        'upgrade_required',
        'this endpoint only accepts WebSocket upgrades; connect with a WebSocket client',
      );
  }
}

function findJob(context: ApiContext, jobId: string): EmulatedJob {
  const job = context.jobs.get(jobId);
  if (job === undefined) {
    throw unknownJob(jobId);
  }
  return job;
}

async function readJson(context: ApiContext, req: IncomingMessage): Promise<unknown> {
  requireJsonContentType(req);
  const body = await readBody(req, context.maxJsonBodyBytes);
  return parseJsonBody(body.toString('utf8'));
}

async function createJob(context: ApiContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let request: ValidatedJobRequest;
  try {
    request = validateCreateJobBody(await readJson(context, req));
  } catch (err) {
    if (err instanceof EmulatorRejection) {
      context.events.record({ type: 'job_rejected', status: err.status, detail: err.message });
    }
    throw err;
  }
  const job = context.createJob(request);
  sendJson(res, 201, job.toJson(), { location: `/job/${encodeURIComponent(job.id)}` });
}

function listJobs(context: ApiContext, url: URL, res: ServerResponse): void {
  const query = parsePageQuery(url.searchParams);
  const page = paginate<EmulatedJob, Job>(
    [...context.jobs.values()],
    (job) => job.seq,
    (job) => job.toJson(),
    query,
    (params) => `${context.baseUrl()}${JOBS_PATH}?${params.toString()}`,
  );
  sendJson(res, 200, page);
}

async function patchJob(context: ApiContext, job: EmulatedJob, req: IncomingMessage, res: ServerResponse): Promise<void> {
  validatePatchBody(await readJson(context, req));
  job.requestFinalization('manual');
  sendJson(res, 200, job.toJson());
}

function listResults(context: ApiContext, job: EmulatedJob, url: URL, res: ServerResponse): void {
  const query = parsePageQuery(url.searchParams);
  const page = paginate(
    job.results,
    (entry) => entry.seq,
    (entry) => entry.result,
    query,
    (params) => `${context.baseUrl()}/job/${encodeURIComponent(job.id)}/results?${params.toString()}`,
  );
  sendJson(res, 200, page);
}

async function addMediaFiles(context: ApiContext, job: EmulatedJob, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const contentType = req.headers['content-type'] ?? '';
  if (mediaTypeOf(contentType) !== 'multipart/form-data') {
    throw new EmulatorRejection(
      400,
      'unsupported_content_type',
      `Content-Type ${JSON.stringify(contentType)} is not supported; send multipart/form-data with parts named "${MEDIA_FILE_PART}"`,
    );
  }
  const body = await readBody(req, context.maxUploadBytes);
  let form: FormData;
  try {
    // undici's multipart parser, which Node ships behind the global Request.
    form = await new Request('http://emulator.invalid/', { method: 'POST', headers: { 'content-type': contentType }, body }).formData();
  } catch (err) {
    throw new EmulatorRejection(400, 'invalid_multipart', `multipart body cannot be parsed: ${(err as Error).message}`);
  }
  const uploads: MediaFileUpload[] = [];
  let partIndex = 0;
  for (const [name, value] of form.entries()) {
    if (name !== MEDIA_FILE_PART) {
      throw new EmulatorRejection(
        422,
        'invalid_value',
        `part ${partIndex} is named ${JSON.stringify(name)}; every part must be named "${MEDIA_FILE_PART}"`,
      );
    }
    if (typeof value === 'string') {
      throw new EmulatorRejection(
        422,
        'invalid_value',
        `part ${partIndex} named "${MEDIA_FILE_PART}" has no filename; send it as a file part`,
      );
    }
    uploads.push({
      filename: value.name,
      contentType: value.type === '' ? 'application/octet-stream' : value.type,
      data: Buffer.from(await value.arrayBuffer()),
    });
    partIndex += 1;
  }
  if (uploads.length === 0) {
    throw new EmulatorRejection(422, 'invalid_value', `multipart body has no part named "${MEDIA_FILE_PART}"`);
  }
  job.addMediaFiles(uploads);
  sendJson(res, 200, job.toJson());
}

async function handleAdmin(context: ApiContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  requireMethod(req, ['POST']);
  const outcome = runAdminAction(context.faults, await readJson(context, req));
  const afterResponse = outcome.afterResponse;
  if (afterResponse === undefined) {
    sendJson(res, 200, outcome.body);
    return;
  }
  // The action (a restart) closes every connection, so this one is closed
  // cleanly first. Destroying it with the response still in flight could lose it.
  const run = (): void => {
    afterResponse().catch((err: unknown) => context.log.error({ err }, 'admin action failed after the response'));
  };
  if (req.socket.destroyed) {
    run();
  } else {
    req.socket.once('close', run);
  }
  sendJson(res, 200, outcome.body, { connection: 'close' });
}

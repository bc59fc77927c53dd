/**
 * Delivery of results to webhooks: a POST of `{"job_id", "results"}` retried
 * until a 2xx response or `maxAttempts` attempts. Deliveries to one URL of one
 * job leave in the order the results were produced.
 *
 * The emulator posts only to loopback hosts (127.0.0.0/8, ::1, localhost).
 * A webhook elsewhere is logged and skipped, so a local test setup never
 * sends data to another machine.
 */
import { BlockList, isIP } from 'node:net';
import { sleep } from '../clock.ts';
import { MEDIA_TYPE, type Result, type WebhookDelivery } from '../jobs/protocol.ts';
import type { Logger } from '../logger.ts';
import type { EmulatorEventLog } from './emulator-event-log.ts';

export interface WebhookSenderOptions {
  log: Logger;
  events: EmulatorEventLog;
  /** Attempts per delivery, the first included. */
  maxAttempts: number;
  /** Delay before the second attempt; each later one doubles it, up to 5 s. */
  retryDelayMs: number;
  /** Time limit of one POST. */
  requestTimeoutMs: number;
}

const MAX_RETRY_DELAY_MS = 5000;

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** True for `localhost` and for addresses in 127.0.0.0/8 or ::1. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
  if (host.toLowerCase() === 'localhost') {
    return true;
  }
  const family = isIP(host);
  if (family === 4) {
    return LOOPBACK.check(host, 'ipv4');
  }
  if (family === 6) {
    return LOOPBACK.check(host, 'ipv6');
  }
  return false;
}

/** URL without query string or credentials, for logs. */
function describeUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}

export class WebhookSender {
  private readonly options: WebhookSenderOptions;
  /** Tail of the delivery chain of each job and URL. */
  private readonly queues = new Map<string, Promise<void>>();
  private readonly abortController = new AbortController();

  constructor(options: WebhookSenderOptions) {
    this.options = options;
  }

  /** Queues the delivery of `results` of `jobId` to `urlText`. */
  deliver(jobId: string, urlText: string, results: Result[]): void {
    if (results.length === 0 || this.abortController.signal.aborted) {
      return;
    }
    const url = new URL(urlText);
    if (!isLoopbackHost(url.hostname)) {
      this.options.log.warn(
        { jobId, url: describeUrl(url), resultCount: results.length },
        'webhook host is not a loopback address; the emulator skips this delivery',
      );
      this.options.events.record({ type: 'webhook_skipped', jobId, detail: describeUrl(url) });
      return;
    }
    const key = `${jobId} ${urlText}`;
    const previous = this.queues.get(key) ?? Promise.resolve();
    const next = previous.then(() => this.send(jobId, url, { job_id: jobId, results }));
    this.queues.set(key, next);
    void next.then(() => {
      if (this.queues.get(key) === next) {
        this.queues.delete(key);
      }
    });
  }

  /** Stops every pending delivery and waits for the queues to settle. */
  async close(): Promise<void> {
    this.abortController.abort(new Error('emulator closed'));
    await Promise.allSettled([...this.queues.values()]);
  }

  private async send(jobId: string, url: URL, payload: WebhookDelivery): Promise<void> {
    const { log, events, maxAttempts, retryDelayMs, requestTimeoutMs } = this.options;
    const signal = this.abortController.signal;
    const body = JSON.stringify(payload);
    let lastProblem = '';
    for (let attempt = 1; attempt <= maxAttempts; attempt += 1) {
      if (signal.aborted) {
        return;
      }
      try {
        const response = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': MEDIA_TYPE },
          body,
          signal: AbortSignal.any([signal, AbortSignal.timeout(requestTimeoutMs)]),
        });
        // Drain the body so that the connection can be reused.
        await response.arrayBuffer();
        if (response.ok) {
          events.record({ type: 'webhook_delivered', jobId, status: response.status, detail: describeUrl(url) });
          return;
        }
        lastProblem = `status ${response.status}`;
      } catch (err) {
        if (signal.aborted) {
          return;
        }
        lastProblem = (err as Error).message;
      }
      if (attempt < maxAttempts) {
        const delayMs = Math.min(MAX_RETRY_DELAY_MS, retryDelayMs * 2 ** (attempt - 1));
        log.info({ jobId, url: describeUrl(url), attempt, delayMs, problem: lastProblem }, 'retrying webhook delivery');
        try {
          await sleep(delayMs, signal);
        } catch {
          return;
        }
      }
    }
    log.warn(
      { jobId, url: describeUrl(url), attempts: maxAttempts, problem: lastProblem, resultCount: payload.results.length },
      'webhook delivery failed; results dropped for this webhook',
    );
    events.record({ type: 'webhook_failed', jobId, detail: `${describeUrl(url)}: ${lastProblem}` });
  }
}

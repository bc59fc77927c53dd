/**
 * `modulate-agent status`: reads `/status.json` from a running agent's
 * metrics listener and prints one line per alias; `--watch` redraws it
 * until interrupted.
 */
import { readFile } from 'node:fs/promises';
import type { Writable } from 'node:stream';

import { parseDocument } from 'yaml';

import { sleep } from '../clock.ts';
import { interpolateDocument } from '../config/interpolate-env.ts';
import { EXIT_CONFIG } from '../errors.ts';
import type { AgentSnapshot } from '../service/agent-snapshot.ts';
import { EXIT_FAILURE } from '../service/agent.ts';
import { parseListenAddress } from '../service/metrics-server.ts';
import { CommandError } from './api-settings.ts';
import { formatStatus } from './status-format.ts';

export const DEFAULT_STATUS_URL = 'http://127.0.0.1:9464';

export interface StatusArgs {
  url?: string;
  config?: string;
  watch: boolean;
  intervalMs: number;
  json: boolean;
}

export interface StatusIo {
  stdout: Writable & { isTTY?: boolean };
  stderr: Writable;
  env?: NodeJS.ProcessEnv;
  /** Ends `--watch`; SIGINT when omitted. */
  signal?: AbortSignal;
}

/**
 * Finds the status URL: `--url`, else `service.metrics_listen` of `--config`,
 * else the default. Only that key is read from the config, so an operator
 * who cannot read the API key file can still run `status`.
 */
export async function resolveStatusUrl(args: Pick<StatusArgs, 'url' | 'config'>, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (args.url !== undefined) {
    return args.url.replace(/\/+$/, '');
  }
  if (args.config === undefined) {
    return DEFAULT_STATUS_URL;
  }

  let text: string;
  try {
    text = await readFile(args.config, 'utf8');
  } catch (error) {
    throw new CommandError(`cannot read config file ${args.config}: ${(error as Error).message}; check the path or pass --url`, EXIT_CONFIG);
  }
  const doc = parseDocument(text);
  interpolateDocument(doc, env);
  const listen = (doc.toJS() as { service?: { metrics_listen?: unknown } } | null)?.service?.metrics_listen;
  if (typeof listen !== 'string') {
    throw new CommandError(
      `${args.config} has no service.metrics_listen, so the agent serves no status; set it (such as 127.0.0.1:9464) and restart the agent`,
      EXIT_CONFIG,
    );
  }

  const { host, port } = parseListenAddress(listen);
  // A wildcard listener is reached on loopback.
  let reachableHost = host;
  if (host === '0.0.0.0' || host === '') {
    reachableHost = '127.0.0.1';
  } else if (host === '::') {
    reachableHost = '::1';
  }
  const urlHost = reachableHost.includes(':') ? `[${reachableHost}]` : reachableHost;
  return `http://${urlHost}:${port}`;
}

async function fetchSnapshot(url: string): Promise<AgentSnapshot> {
  let response: Response;
  try {
    response = await fetch(`${url}/status.json`, { signal: AbortSignal.timeout(5000) });
  } catch (error) {
    const detail = (error as { cause?: { code?: string; message?: string } }).cause;
    const cause = detail?.code ?? detail?.message ?? (error as Error).message;
    throw new CommandError(
      `cannot reach the agent at ${url} (${cause}); is it running with service.metrics_listen set? Pass --url or --config`,
      EXIT_FAILURE,
    );
  }
  if (!response.ok) {
    throw new CommandError(`${url}/status.json returned ${response.status}; is ${url} the agent's metrics listener?`, EXIT_FAILURE);
  }
  return (await response.json()) as AgentSnapshot;
}

/** Runs the status command; returns the exit code. */
export async function runStatusCommand(args: StatusArgs, io: StatusIo): Promise<number> {
  let url: string;
  try {
    url = await resolveStatusUrl(args, io.env);
  } catch (error) {
    const failure = error as CommandError;
    io.stderr.write(`modulate-agent: ${failure.message}\n`);
    return failure.exitCode ?? EXIT_FAILURE;
  }
  if (!args.watch) {
    try {
      const snapshot = await fetchSnapshot(url);
      io.stdout.write(args.json ? `${JSON.stringify(snapshot, null, 2)}\n` : formatStatus(snapshot, url));
      return 0;
    } catch (error) {
      io.stderr.write(`modulate-agent: ${(error as Error).message}\n`);
      return (error as CommandError).exitCode ?? EXIT_FAILURE;
    }
  }

  const controller = new AbortController();
  const onInterrupt = (): void => controller.abort();
  const signal = io.signal ?? controller.signal;
  if (io.signal === undefined) {
    process.once('SIGINT', onInterrupt);
  }
  const clearScreen = io.stdout.isTTY === true ? '\x1b[H\x1b[2J' : '';
  try {
    while (!signal.aborted) {
      let screen: string;
      try {
        const snapshot = await fetchSnapshot(url);
        screen = args.json ? `${JSON.stringify(snapshot)}\n` : formatStatus(snapshot, url);
      } catch (error) {
        // The agent may be restarting; keep watching.
        screen = `${new Date().toISOString()}  ${(error as Error).message}\n`;
      }
      io.stdout.write(clearScreen === '' ? `${screen}\n` : `${clearScreen}${screen}`);
      await sleep(args.intervalMs, signal).catch(() => undefined);
    }
    return 0;
  } finally {
    process.off('SIGINT', onInterrupt);
  }
}

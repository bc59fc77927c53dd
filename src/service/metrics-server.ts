/**
 * HTTP listener of `service.metrics_listen`:
 *
 *   GET /metrics       Prometheus text format
 *   GET /healthz       200 while the process runs and its event loop responds
 *   GET /readyz        200 when every stream is ready (see isAliasReady), else 503
 *   GET /status.json   the AgentSnapshot, for `modulate-agent status`
 *
 * It binds to loopback in the example config: the endpoints carry job IDs
 * and need no authentication, so exposing them further is the operator's
 * decision.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import type { Logger } from '../logger.ts';
import type { AgentMetrics } from './agent-metrics.ts';
import type { AgentSnapshot } from './agent-snapshot.ts';

export interface MetricsServerOptions {
  /** HOST:PORT, with IPv6 hosts in brackets; port 0 picks a free port. */
  listen: string;
  metrics: AgentMetrics;
  takeSnapshot: () => AgentSnapshot;
  logger: Logger;
}

/** Splits `HOST:PORT`; IPv6 hosts lose their brackets. */
export function parseListenAddress(listen: string): { host: string; port: number } {
  const colon = listen.lastIndexOf(':');
  const host = listen.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(listen.slice(colon + 1)) };
}

export class MetricsServer {
  private readonly server: Server;
  private readonly options: MetricsServerOptions;
  private readonly log: Logger;

  private constructor(options: MetricsServerOptions) {
    this.options = options;
    this.log = options.logger.child({ component: 'metrics' });
    this.server = createServer((request, response) => {
      void this.handle(request, response);
    });
  }

  /**
   * Starts listening.
   *
   * @throws Error with the socket's code (EADDRINUSE, EACCES, ...) when the address cannot be bound.
   */
  static async start(options: MetricsServerOptions): Promise<MetricsServer> {
    const server = new MetricsServer(options);
    const { host, port } = parseListenAddress(options.listen);
    await new Promise<void>((resolve, reject) => {
      server.server.once('error', reject);
      server.server.listen(port, host, () => {
        server.server.off('error', reject);
        resolve();
      });
    });
    server.server.on('error', (error) => server.log.error({ err: error }, 'metrics endpoint failed'));
    const address = server.address;
    server.log.info({ listen: options.listen, host: address.address, port: address.port }, 'metrics endpoint listening');
    return server;
  }

  get address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /** Stops accepting requests and closes open connections. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    await closed;
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const path = new URL(request.url ?? '/', 'http://metrics.invalid').pathname;
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      send(response, 405, 'text/plain', 'only GET and HEAD are supported\n', { allow: 'GET, HEAD' });
      return;
    }
    try {
      switch (path) {
        case '/metrics': {
          const text = await this.options.metrics.render();
          send(response, 200, this.options.metrics.contentType, text);
          return;
        }
        case '/healthz':
          send(response, 200, 'text/plain', 'ok\n');
          return;
        case '/readyz': {
          const snapshot = this.options.takeSnapshot();
          const notReady = snapshot.jobs.flatMap((job) =>
            job.aliases.filter((alias) => !alias.ready).map((alias) => `${job.name}/${alias.alias} ${alias.state}`),
          );
          const body = snapshot.ready ? 'ready\n' : `not ready (${snapshot.phase})${notReady.map((line) => `\n${line}`).join('')}\n`;
          send(response, snapshot.ready ? 200 : 503, 'text/plain', body);
          return;
        }
        case '/status.json':
          send(response, 200, 'application/json', `${JSON.stringify(this.options.takeSnapshot())}\n`);
          return;
        default:
          send(response, 404, 'text/plain', `no endpoint at ${path}; try /metrics, /healthz, /readyz or /status.json\n`);
      }
    } catch (error) {
      this.log.error({ err: error, path }, 'metrics request failed');
      send(response, 500, 'text/plain', 'internal error; see the agent log\n');
    }
  }
}

function send(
  response: ServerResponse,
  statusCode: number,
  contentType: string,
  body: string,
  headers: Record<string, string> = {},
): void {
  response.writeHead(statusCode, { 'content-type': contentType, 'cache-control': 'no-store', ...headers });
  response.end(response.req.method === 'HEAD' ? undefined : body);
}

/**
 * Helpers of the service tests: config text for the agent, and waits on the
 * JSON log lines of an agent running as a child process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';

import { parseLogLines, type CliRun } from '../helpers/tools.ts';

export interface StreamSpec {
  alias: string;
  /** Source as YAML flow mapping text, such as `{type: tone, frequency_hz: 440}`. */
  source: string;
}

export interface JobSpec {
  name: string;
  streams: StreamSpec[];
  analyses?: string[];
}

/** Builds an agent config. Logs go to standard output because `results_dir` is always set. */
export function serviceConfigYaml(options: {
  baseUrl: string;
  resultsDir: string;
  jobs: JobSpec[];
  service?: Record<string, string | number | boolean>;
}): string {
  const jobs = options.jobs
    .map((job) => {
      const streams = job.streams
        .map((stream) => `      - alias: ${stream.alias}\n        source: ${stream.source}`)
        .join('\n');
      return `  - name: ${job.name}\n    analyses: [${(job.analyses ?? ['transcription']).join(', ')}]\n    streams:\n${streams}`;
    })
    .join('\n');
  const service = Object.entries({ shutdown_timeout_ms: 15000, ...options.service })
    .map(([key, value]) => `  ${key}: ${typeof value === 'string' ? JSON.stringify(value) : value}`)
    .join('\n');
  return `api:
  base_url: ${options.baseUrl}
  account_id: emulator
  api_key: \${TEST_API_KEY}
jobs:
${jobs}
service:
  results_dir: ${JSON.stringify(options.resultsDir)}
${service}
`;
}

export type LogLine = Record<string, unknown>;

/**
 * Resolves with the first log line, past or future, on the child's standard
 * output that matches; rejects after `timeoutMs` or when the child exits first.
 */
export function waitForLog(run: CliRun, predicate: (line: LogLine) => boolean, timeoutMs: number, what: string): Promise<LogLine> {
  return new Promise((resolve, reject) => {
    const check = (): boolean => {
      const found = parseLogLines(run.stdout()).find(predicate);
      if (found !== undefined) {
        cleanup();
        resolve(found);
        return true;
      }
      return false;
    };
    const onData = (): void => {
      check();
    };
    const onExit = (): void => {
      // Output written just before the exit may still be in the pipe.
      setImmediate(() => {
        if (!check()) {
          cleanup();
          reject(new Error(`agent exited before logging ${what}; stderr: ${run.stderr()}\nstdout tail: ${run.stdout().slice(-2000)}`));
        }
      });
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for the log line: ${what}\nstdout tail: ${run.stdout().slice(-3000)}`));
    }, timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      run.child.stdout?.off('data', onData);
      run.child.off('exit', onExit);
    };
    run.child.stdout?.on('data', onData);
    run.child.once('exit', onExit);
    check();
  });
}

/** Log lines with the given message. */
export function logsWithMessage(run: CliRun, message: string): LogLine[] {
  return parseLogLines(run.stdout()).filter((line) => line['msg'] === message);
}

/** Reads the port of the metrics endpoint from the agent's log. */
export async function metricsPort(run: CliRun): Promise<number> {
  const line = await waitForLog(run, (entry) => entry['msg'] === 'metrics endpoint listening', 20_000, 'metrics endpoint listening');
  return line['port'] as number;
}

/**
 * An independent receiver of systemd notifications: python3 binds an
 * AF_UNIX datagram socket at `path` and prints each datagram as a JSON string.
 */
export interface NotifyReceiver {
  messages: () => string[];
  waitFor: (predicate: (message: string) => boolean, timeoutMs: number, what: string) => Promise<string>;
  close: () => Promise<void>;
}

const RECEIVER_SCRIPT = `
import json, socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(sys.argv[1])
print("listening", flush=True)
while True:
    data = sock.recv(65536)
    print(json.dumps(data.decode("utf-8")), flush=True)
`;

export async function startNotifyReceiver(path: string): Promise<NotifyReceiver> {
  let child: ChildProcess;
  try {
    child = spawn('python3', ['-c', RECEIVER_SCRIPT, path], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    throw new Error(`python3 is needed as an independent sd_notify receiver: ${(error as Error).message}`);
  }
  const received: string[] = [];
  const waiters = new Set<() => void>();
  let buffered = '';
  let stderr = '';
  child.stderr?.on('data', (data: Buffer) => {
    stderr += data.toString();
  });
  const listening = new Promise<void>((resolve, reject) => {
    child.once('error', (error) => reject(new Error(`python3 is needed as an independent sd_notify receiver: ${error.message}`)));
    child.once('exit', (code) => reject(new Error(`notify receiver exited with ${code}: ${stderr}`)));
    child.stdout?.on('data', (data: Buffer) => {
      buffered += data.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        if (line === 'listening') {
          resolve();
        } else if (line !== '') {
          received.push(JSON.parse(line) as string);
        }
      }
      for (const waiter of waiters) {
        waiter();
      }
    });
  });
  await listening;
  return {
    messages: () => received.slice(),
    waitFor: (predicate, timeoutMs, what) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const found = received.find(predicate);
          if (found !== undefined) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(found);
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for the notification ${what}; received: ${JSON.stringify(received)}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      }),
    close: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await once(child, 'exit');
      }
    },
  };
}

/** Fetches a URL on the metrics listener and returns status and body. */
export async function fetchText(url: string): Promise<{ status: number; body: string }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.text() };
}

/** Reads one sample of a Prometheus text exposition, or undefined when absent. */
export function metricValue(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) {
      continue;
    }
    const match = /^([^{\s]+)(\{(.*)\})?\s+(\S+)$/.exec(line);
    if (match === null || match[1] !== name) {
      continue;
    }
    const found: Record<string, string> = {};
    for (const pair of (match[3] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      found[pair[1] as string] = pair[2] as string;
    }
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) {
      return Number(match[4]);
    }
  }
  return undefined;
}

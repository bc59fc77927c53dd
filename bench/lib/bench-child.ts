/**
 * A process of the benchmark (sink, subject under test, load generator):
 * started with an optional CPU affinity, its output appended to a log file,
 * and the JSON event lines of the bench helpers (`{"event": ...}`) on its
 * standard output collected for the runner to wait on.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { createInterface } from 'node:readline';

import { delay } from './monotonic-time.ts';

export interface BenchChildOptions {
  name: string;
  /** Arguments after the Node executable. */
  nodeArgs: string[];
  cwd: string;
  logFile: string;
  /** CPUs to pin the process to, in taskset syntax (`0`, `1-3`); unpinned when undefined. */
  cpuList?: string | undefined;
}

export type BenchEvent = Record<string, unknown> & { event: string };

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class BenchChild {
  /** Processes started and not yet exited, so that an interrupted runner can end them. */
  private static readonly live = new Set<BenchChild>();

  readonly name: string;
  readonly pid: number;
  readonly exited: Promise<ChildExit>;
  private readonly child: ChildProcess;
  private readonly log: WriteStream;
  private readonly events: BenchEvent[] = [];
  private readonly listeners = new Set<(event: BenchEvent) => void>();
  private exit: ChildExit | undefined;

  private constructor(options: BenchChildOptions) {
    this.name = options.name;
    this.log = createWriteStream(options.logFile, { flags: 'a' });
    // taskset execs the command in place, so the PID is the Node process itself.
    const [command, args] =
      options.cpuList === undefined
        ? [process.execPath, options.nodeArgs]
        : ['taskset', ['-c', options.cpuList, process.execPath, ...options.nodeArgs]];
    this.child = spawn(command, args, { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    if (this.child.pid === undefined) {
      throw new Error(`${options.name} could not be started (${command})`);
    }
    this.pid = this.child.pid;
    this.child.stderr!.pipe(this.log, { end: false });
    const lines = createInterface({ input: this.child.stdout!, crlfDelay: Infinity });
    lines.on('line', (line) => this.onLine(line));
    BenchChild.live.add(this);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        BenchChild.live.delete(this);
        // Let the last output reach the log before it is closed.
        setImmediate(() => this.log.end());
        resolve(this.exit);
      });
    });
  }

  static start(options: BenchChildOptions): BenchChild {
    return new BenchChild(options);
  }

  /** Kills every process started here that is still running, for a runner that is interrupted. */
  static killAll(): void {
    for (const child of BenchChild.live) {
      child.child.kill('SIGKILL');
    }
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  /** Resolves with the first event named `name`, past or future; rejects after `timeoutMs` or when the process exits first. */
  waitForEvent(name: string, timeoutMs: number): Promise<BenchEvent> {
    const past = this.events.find((event) => event.event === name);
    if (past !== undefined) {
      return Promise.resolve(past);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.listeners.delete(listener);
        reject(new Error(`${this.name} sent no "${name}" event within ${timeoutMs} ms; see its log`));
      }, timeoutMs);
      const listener = (event: BenchEvent): void => {
        if (event.event === name) {
          clearTimeout(timer);
          this.listeners.delete(listener);
          resolve(event);
        }
      };
      this.listeners.add(listener);
      void this.exited.then((exit) => {
        if (this.listeners.delete(listener)) {
          clearTimeout(timer);
          reject(new Error(`${this.name} exited (code ${exit.code}, signal ${exit.signal}) before its "${name}" event; see its log`));
        }
      });
    });
  }

  /** Sends `signal` and waits for the exit; kills the process after `timeoutMs`. */
  async stop(signal: NodeJS.Signals, timeoutMs: number): Promise<ChildExit & { timedOut: boolean }> {
    if (this.exit !== undefined) {
      return { ...this.exit, timedOut: false };
    }
    this.child.kill(signal);
    const outcome = await Promise.race([this.exited, delay(timeoutMs).then(() => undefined)]);
    if (outcome !== undefined) {
      return { ...outcome, timedOut: false };
    }
    this.child.kill('SIGKILL');
    return { ...(await this.exited), timedOut: true };
  }

  private onLine(line: string): void {
    this.log.write(`${line}\n`);
    if (!line.startsWith('{"event"')) {
      return;
    }
    let event: BenchEvent;
    try {
      event = JSON.parse(line) as BenchEvent;
    } catch {
      return;
    }
    this.events.push(event);
    for (const listener of [...this.listeners]) {
      listener(event);
    }
  }
}

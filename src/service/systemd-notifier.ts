/**
 * The sd_notify protocol of systemd, written in TypeScript: each state
 * change is one datagram of `KEY=VALUE` lines sent to the AF_UNIX socket
 * named by `$NOTIFY_SOCKET` (systemd's sd_notify(3) man page).
 *
 * Node's `dgram` module has no AF_UNIX datagram sockets, so the datagrams go
 * through the `unix-dgram` package (a small native addon, optional
 * dependency). The `sd-notify` package would need libsystemd's headers at
 * build time, and shelling out to `systemd-notify` sends from a child
 * process, which `NotifyAccess=main` rejects and which systemd may fail to
 * attribute to the unit once the child has exited.
 *
 * Outside systemd (`$NOTIFY_SOCKET` unset) every method does nothing.
 */
import { createRequire } from 'node:module';

import type { Logger } from '../logger.ts';

/** The part of a `unix-dgram` socket this module uses. */
interface UnixDatagramSocket {
  send(buffer: Buffer, offset: number, length: number, path: string, callback: (error?: Error) => void): void;
  close(): void;
  on(event: 'error', listener: (error: Error) => void): void;
}

interface UnixDatagramModule {
  createSocket(type: 'unix_dgram'): UnixDatagramSocket;
}

/** Opens an AF_UNIX datagram socket; tests and hosts without the addon pass their own. */
export type OpenDatagramSocket = () => UnixDatagramSocket;

export interface SystemdNotifierOptions {
  logger: Logger;
  /** Environment to read `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from; `process.env` when omitted. */
  env?: NodeJS.ProcessEnv;
  pid?: number;
  openSocket?: OpenDatagramSocket;
}

const UNIX_DGRAM_HINT =
  'install build tools (apt-get install -y build-essential python3) and run npm install unix-dgram, ' +
  'or set Type=simple in the unit';

function openUnixDatagramSocket(): UnixDatagramSocket {
  const require = createRequire(import.meta.url);
  const module = require('unix-dgram') as UnixDatagramModule;
  return module.createSocket('unix_dgram');
}

/**
 * Sends READY, RELOADING, STOPPING, STATUS and WATCHDOG notifications to
 * systemd. A failed send is logged and never thrown: the agent keeps
 * streaming even when the service manager cannot receive notifications.
 */
export class SystemdNotifier {
  /** Path of the notification socket, or undefined outside a `Type=notify` unit. */
  readonly socketPath: string | undefined;
  /** Interval of WATCHDOG=1 pings: half of `WatchdogSec`, as sd_watchdog_enabled(3) recommends. */
  readonly watchdogIntervalMs: number | undefined;
  private readonly log: Logger;
  private readonly openSocket: OpenDatagramSocket;
  private socket: UnixDatagramSocket | undefined;
  private watchdogTimer: NodeJS.Timeout | undefined;
  private disabledReason: string | undefined;

  constructor(options: SystemdNotifierOptions) {
    const env = options.env ?? process.env;
    const pid = options.pid ?? process.pid;
    this.log = options.logger.child({ component: 'systemd' });
    this.openSocket = options.openSocket ?? openUnixDatagramSocket;
    const socketPath = env['NOTIFY_SOCKET'];
    this.socketPath = socketPath === undefined || socketPath === '' ? undefined : socketPath;
    this.watchdogIntervalMs = parseWatchdogIntervalMs(env, pid);
    if (this.socketPath?.startsWith('@') === true) {
      // unix-dgram copies the path with strncpy, so it cannot address the abstract namespace.
      this.disabledReason = `NOTIFY_SOCKET ${this.socketPath} is an abstract socket, which this agent cannot send to`;
      this.log.error({ notifySocket: this.socketPath }, `${this.disabledReason}; systemd will not see the agent become ready`);
    }
  }

  get enabled(): boolean {
    return this.socketPath !== undefined && this.disabledReason === undefined;
  }

  /** Tells systemd that start-up (or a reload) has finished. */
  ready(status?: string): void {
    this.send(['READY=1', ...(status === undefined ? [] : [`STATUS=${status}`])]);
  }

  /**
   * Tells systemd that the config is being reloaded. MONOTONIC_USEC lets
   * `Type=notify-reload` (systemd 253 and later) match the reload; older
   * versions ignore both lines.
   */
  reloading(): void {
    const monotonicUsec = process.hrtime.bigint() / 1000n;
    this.send(['RELOADING=1', `MONOTONIC_USEC=${monotonicUsec}`, 'STATUS=reloading the config']);
  }

  /** Tells systemd that shutdown has begun, so it does not treat the exit as a crash. */
  stopping(): void {
    this.send(['STOPPING=1', 'STATUS=ending streams and finalizing jobs']);
  }

  status(text: string): void {
    this.send([`STATUS=${text}`]);
  }

  /**
   * Starts WATCHDOG=1 pings from the event loop when `WatchdogSec` is set.
   * A blocked event loop stops the pings, and systemd then restarts the agent.
   */
  startWatchdog(): void {
    if (this.watchdogIntervalMs === undefined || this.watchdogTimer !== undefined || !this.enabled) {
      return;
    }
    this.log.info({ watchdogIntervalMs: this.watchdogIntervalMs }, 'systemd watchdog enabled');
    this.send(['WATCHDOG=1']);
    this.watchdogTimer = setInterval(() => this.send(['WATCHDOG=1']), this.watchdogIntervalMs);
    this.watchdogTimer.unref();
  }

  /** Stops the watchdog pings and closes the socket. */
  close(): void {
    if (this.watchdogTimer !== undefined) {
      clearInterval(this.watchdogTimer);
      this.watchdogTimer = undefined;
    }
    if (this.socket !== undefined) {
      this.socket.close();
      this.socket = undefined;
    }
  }

  private send(lines: string[]): void {
    const path = this.socketPath;
    if (path === undefined || this.disabledReason !== undefined) {
      return;
    }
    const socket = this.ensureSocket();
    if (socket === undefined) {
      return;
    }
    const message = Buffer.from(`${lines.join('\n')}\n`);
    socket.send(message, 0, message.length, path, (error) => {
      if (error !== undefined) {
        this.log.warn({ err: error, notifySocket: path, message: lines[0] }, 'sending a systemd notification failed');
      }
    });
  }

  private ensureSocket(): UnixDatagramSocket | undefined {
    if (this.socket !== undefined) {
      return this.socket;
    }
    try {
      this.socket = this.openSocket();
    } catch (error) {
      this.disabledReason = 'the unix-dgram module could not be loaded';
      this.log.error(
        { err: error, notifySocket: this.socketPath },
        `NOTIFY_SOCKET is set but unix-dgram is not available; systemd will not see the agent become ready: ${UNIX_DGRAM_HINT}`,
      );
      return undefined;
    }
    this.socket.on('error', (error) => this.log.warn({ err: error }, 'systemd notification socket failed'));
    return this.socket;
  }
}

/**
 * Reads the watchdog interval as sd_watchdog_enabled(3) does: `WATCHDOG_USEC`
 * must be a positive number of microseconds, and `WATCHDOG_PID`, when set,
 * must be this process (the pings are meant for the main process only).
 */
function parseWatchdogIntervalMs(env: NodeJS.ProcessEnv, pid: number): number | undefined {
  const usecText = env['WATCHDOG_USEC'];
  if (usecText === undefined || !/^\d+$/.test(usecText)) {
    return undefined;
  }
  const watchdogPid = env['WATCHDOG_PID'];
  if (watchdogPid !== undefined && watchdogPid !== '' && Number(watchdogPid) !== pid) {
    return undefined;
  }
  const usec = Number(usecText);
  if (usec <= 0) {
    return undefined;
  }
  return Math.max(1, Math.floor(usec / 2000));
}

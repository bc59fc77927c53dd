/**
 * Fault injection: network drops, server closes, rejected handshakes and
 * requests, a server that stops reading, withheld `done` messages, ignored
 * pings and restarts. Tests call these methods; the admin endpoint
 * (`POST /_emulator/faults`) maps its actions onto them.
 */
import { CloseCode } from '../jobs/protocol.ts';
import type { Logger } from '../logger.ts';
import type { EmulatorEventLog } from './emulator-event-log.ts';
import { EmulatorRejection } from './emulator-rejection.ts';
import type { ConnectionFaultState, StreamConnection } from './stream-connection.ts';

/** Selects stream connections by job and alias; an empty filter selects all. */
export interface ConnectionFilter {
  jobId?: string;
  alias?: string;
}

export interface RestartOptions {
  /** Destroy sockets without a close frame instead of closing them with 1001. */
  drop?: boolean;
  /** Time between closing the port and listening again, in ms. */
  downtimeMs?: number;
}

/** A rejection to apply to the next requests or upgrades. */
export interface InjectedRejection {
  status: number;
  retryAfterSeconds: number | undefined;
}

/** Connections and restart hook that the faults act on, provided by the emulator. */
export interface FaultTargets {
  connections(): Iterable<StreamConnection>;
  restart(options: RestartOptions): Promise<void>;
}

function matches(connection: StreamConnection, filter: ConnectionFilter | undefined): boolean {
  return (
    (filter?.jobId === undefined || filter.jobId === connection.jobId) &&
    (filter?.alias === undefined || filter.alias === connection.alias)
  );
}

function invalidFault(message: string): EmulatorRejection {
  return new EmulatorRejection(422, 'invalid_fault', message);
}

function checkCount(count: number): void {
  if (!Number.isInteger(count) || count < 1) {
    throw invalidFault(`count must be a positive integer, got ${count}`);
  }
}

function checkStatus(status: number): void {
  if (!Number.isInteger(status) || status < 400 || status > 599) {
    throw invalidFault(`status must be an HTTP error status from 400 to 599, got ${status}`);
  }
}

function checkDurationMs(durationMs: number, name: string): void {
  if (!Number.isFinite(durationMs) || durationMs < 0) {
    throw invalidFault(`${name} must be a non-negative number of milliseconds, got ${durationMs}`);
  }
}

/** Close codes an endpoint may send (RFC 6455, section 7.4): 1005, 1006 and 1015 are reserved for reporting. */
function checkCloseCode(code: number): void {
  const sendable = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
  if (!Number.isInteger(code) || !sendable) {
    throw invalidFault(`close code ${code} cannot be sent; use 1000-1003, 1007-1014 or 3000-4999`);
  }
}

export class EmulatorFaults implements ConnectionFaultState {
  private readonly targets: FaultTargets;
  private readonly log: Logger;
  private readonly events: EmulatorEventLog;
  private pendingUpgradeRejections: Array<InjectedRejection & { remaining: number }> = [];
  private pendingRequestRejections: Array<InjectedRejection & { remaining: number }> = [];
  private doneWithheldFor: ConnectionFilter[] = [];
  private doneDelays: Array<{ filter: ConnectionFilter | undefined; delayMs: number }> = [];
  private pingsIgnored = false;

  constructor(targets: FaultTargets, log: Logger, events: EmulatorEventLog) {
    this.targets = targets;
    this.log = log;
    this.events = events;
  }

  /** Destroys matching stream sockets without a close frame; returns how many. */
  dropConnections(filter?: ConnectionFilter): number {
    const selected = this.select(filter);
    for (const connection of selected) {
      connection.drop();
    }
    this.applied('drop_connections', selected.length);
    return selected.length;
  }

  /**
   * Closes matching streams with `code`. Codes other than 1000 and 1001 are
   * preceded by an `error` message carrying `reason`, as the server does.
   */
  closeStreams(code: number, reason?: string, filter?: ConnectionFilter): number {
    checkCloseCode(code);
    const selected = this.select(filter);
    const text = reason ?? `closed by fault injection with code ${code}`;
    const sendsError = code !== CloseCode.NORMAL && code !== CloseCode.GOING_AWAY;
    for (const connection of selected) {
      connection.closeWith(code, text, { acceptLateAudio: true, ...(sendsError ? { error: text } : {}) });
    }
    this.applied(`close_streams ${code}`, selected.length);
    return selected.length;
  }

  /** Rejects the next `count` stream upgrades with `status`, before authentication. */
  refuseNextUpgrades(count: number, status: number, retryAfterSeconds?: number): void {
    checkCount(count);
    checkStatus(status);
    this.pendingUpgradeRejections.push({ remaining: count, status, retryAfterSeconds });
    this.applied(`refuse_next_upgrades ${count}x${status}`, count);
  }

  /** Rejects the next `count` HTTP requests to the API (not the admin endpoint) with `status`. */
  refuseNextRequests(count: number, status: number, retryAfterSeconds?: number): void {
    checkCount(count);
    checkStatus(status);
    this.pendingRequestRejections.push({ remaining: count, status, retryAfterSeconds });
    this.applied(`refuse_next_requests ${count}x${status}`, count);
  }

  /** Stops reading from matching sockets for `durationMs`; returns how many. */
  pauseReading(durationMs: number, filter?: ConnectionFilter): number {
    checkDurationMs(durationMs, 'duration');
    const selected = this.select(filter);
    for (const connection of selected) {
      connection.pauseReading(durationMs);
    }
    this.applied(`pause_reading ${durationMs}ms`, selected.length);
    return selected.length;
  }

  /** Never sends `done` (nor the 1000 close) to matching streams that end from now on. */
  withholdDone(filter?: ConnectionFilter): void {
    this.doneWithheldFor.push(filter ?? {});
    this.applied('withhold_done', 0);
  }

  /** Delays `done` by `delayMs` for matching streams that end from now on. */
  delayDone(delayMs: number, filter?: ConnectionFilter): void {
    checkDurationMs(delayMs, 'delay');
    this.doneDelays.push({ filter, delayMs });
    this.applied(`delay_done ${delayMs}ms`, 0);
  }

  /** Stops (true) or resumes (false) sending pongs for WebSocket pings on every stream. */
  ignorePings(on: boolean): void {
    this.pingsIgnored = on;
    this.applied(`ignore_pings ${on}`, 0);
  }

  /** Closes the port and every socket, then listens again on the same port; jobs and recordings stay. */
  async restart(options: RestartOptions = {}): Promise<void> {
    if (options.downtimeMs !== undefined) {
      checkDurationMs(options.downtimeMs, 'downtime');
    }
    this.applied('restart', 0);
    await this.targets.restart(options);
  }

  /** Removes every pending fault: injected rejections, withheld or delayed `done`, ignored pings. */
  clear(): void {
    this.pendingUpgradeRejections = [];
    this.pendingRequestRejections = [];
    this.doneWithheldFor = [];
    this.doneDelays = [];
    this.pingsIgnored = false;
    this.applied('clear', 0);
  }

  /** Consumes one pending upgrade rejection, if any. */
  takeUpgradeRejection(): InjectedRejection | undefined {
    return takeRejection(this.pendingUpgradeRejections);
  }

  /** Consumes one pending request rejection, if any. */
  takeRequestRejection(): InjectedRejection | undefined {
    return takeRejection(this.pendingRequestRejections);
  }

  isDoneWithheld(connection: StreamConnection): boolean {
    return this.doneWithheldFor.some((filter) => matches(connection, filter));
  }

  doneDelayMs(connection: StreamConnection): number {
    return this.doneDelays
      .filter((entry) => matches(connection, entry.filter))
      .reduce((longest, entry) => Math.max(longest, entry.delayMs), 0);
  }

  ignoresPings(): boolean {
    return this.pingsIgnored;
  }

  private select(filter: ConnectionFilter | undefined): StreamConnection[] {
    return [...this.targets.connections()].filter((connection) => matches(connection, filter));
  }

  private applied(action: string, affected: number): void {
    this.log.info({ action, affected }, 'fault injected');
    this.events.record({ type: 'fault_applied', detail: action });
  }
}

function takeRejection(queue: Array<InjectedRejection & { remaining: number }>): InjectedRejection | undefined {
  const head = queue[0];
  if (head === undefined) {
    return undefined;
  }
  head.remaining -= 1;
  if (head.remaining <= 0) {
    queue.shift();
  }
  return { status: head.status, retryAfterSeconds: head.retryAfterSeconds };
}

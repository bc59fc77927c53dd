/**
 * The admin endpoint `POST /_emulator/faults`, served only when the emulator
 * starts with `adminEndpoint: true` (CLI: `--admin`). It takes the same Basic
 * auth as the API and a JSON body naming one fault action:
 *
 *   {"action": "drop_connections", "job_id"?: "...", "alias"?: "..."}
 *   {"action": "close_streams", "code": 1011, "reason"?: "...", "job_id"?, "alias"?}
 *   {"action": "refuse_next_upgrades", "count": 2, "status": 429, "retry_after_seconds"?: 1}
 *   {"action": "refuse_next_requests", "count": 1, "status": 503, "retry_after_seconds"?: 2}
 *   {"action": "pause_reading", "duration_ms": 5000, "job_id"?, "alias"?}
 *   {"action": "withhold_done", "job_id"?, "alias"?}
 *   {"action": "delay_done", "delay_ms": 2000, "job_id"?, "alias"?}
 *   {"action": "ignore_pings", "on": true}
 *   {"action": "restart", "downtime_ms"?: 1000, "drop"?: false}
 *   {"action": "clear"}
 *
 * It responds with `{"action", "affected"}`, where `affected` counts the
 * stream connections touched (or the requests to reject). A restart runs
 * after the response has been sent.
 */
import { EmulatorRejection } from './emulator-rejection.ts';
import type { ConnectionFilter, EmulatorFaults } from './emulator-faults.ts';

export const ADMIN_FAULTS_PATH = '/_emulator/faults';

export interface AdminOutcome {
  body: { action: string; affected: number };
  /** Work to run once the response is sent. */
  afterResponse?: () => Promise<void>;
}

function invalid(message: string): EmulatorRejection {
  return new EmulatorRejection(422, 'invalid_fault', message);
}

function numberField(body: Record<string, unknown>, name: string): number {
  const value = body[name];
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw invalid(`${name} must be a number, got ${value === undefined ? 'nothing' : JSON.stringify(value)}`);
  }
  return value;
}

function optionalNumberField(body: Record<string, unknown>, name: string): number | undefined {
  return body[name] === undefined ? undefined : numberField(body, name);
}

function optionalStringField(body: Record<string, unknown>, name: string): string | undefined {
  const value = body[name];
  if (value !== undefined && typeof value !== 'string') {
    throw invalid(`${name} must be a string, got ${JSON.stringify(value)}`);
  }
  return value;
}

function filterOf(body: Record<string, unknown>): ConnectionFilter {
  const jobId = optionalStringField(body, 'job_id');
  const alias = optionalStringField(body, 'alias');
  return { ...(jobId === undefined ? {} : { jobId }), ...(alias === undefined ? {} : { alias }) };
}

/** Applies one admin action to `faults`. Throws a 422 rejection for an unknown action or invalid fields. */
export function runAdminAction(faults: EmulatorFaults, body: unknown): AdminOutcome {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw invalid('body must be a JSON object with an action');
  }
  const fields = body as Record<string, unknown>;
  const action = fields['action'];
  const outcome = (affected: number): AdminOutcome => ({ body: { action: String(action), affected } });
  switch (action) {
    case 'drop_connections':
      return outcome(faults.dropConnections(filterOf(fields)));
    case 'close_streams':
      return outcome(faults.closeStreams(numberField(fields, 'code'), optionalStringField(fields, 'reason'), filterOf(fields)));
    case 'refuse_next_upgrades': {
      const count = numberField(fields, 'count');
      faults.refuseNextUpgrades(count, numberField(fields, 'status'), optionalNumberField(fields, 'retry_after_seconds'));
      return outcome(count);
    }
    case 'refuse_next_requests': {
      const count = numberField(fields, 'count');
      faults.refuseNextRequests(count, numberField(fields, 'status'), optionalNumberField(fields, 'retry_after_seconds'));
      return outcome(count);
    }
    case 'pause_reading':
      return outcome(faults.pauseReading(numberField(fields, 'duration_ms'), filterOf(fields)));
    case 'withhold_done':
      faults.withholdDone(filterOf(fields));
      return outcome(0);
    case 'delay_done':
      faults.delayDone(numberField(fields, 'delay_ms'), filterOf(fields));
      return outcome(0);
    case 'ignore_pings': {
      const on = fields['on'];
      if (typeof on !== 'boolean') {
        throw invalid(`on must be true or false, got ${JSON.stringify(on)}`);
      }
      faults.ignorePings(on);
      return outcome(0);
    }
    case 'restart': {
      const downtimeMs = optionalNumberField(fields, 'downtime_ms');
      const drop = fields['drop'];
      if (drop !== undefined && typeof drop !== 'boolean') {
        throw invalid(`drop must be true or false, got ${JSON.stringify(drop)}`);
      }
      return {
        ...outcome(0),
        afterResponse: () =>
          faults.restart({
            ...(downtimeMs === undefined ? {} : { downtimeMs }),
            ...(drop === undefined ? {} : { drop }),
          }),
      };
    }
    case 'clear':
      faults.clear();
      return outcome(0);
    default:
      throw invalid(
        `action ${JSON.stringify(action)} is unknown; use drop_connections, close_streams, refuse_next_upgrades, ` +
          'refuse_next_requests, pause_reading, withhold_done, delay_done, ignore_pings, restart or clear',
      );
  }
}

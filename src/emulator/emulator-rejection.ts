import { AgentError } from '../errors.ts';

/**
 * A request that the emulator rejects with an HTTP status and an error body
 * `{"error": {"code", "message"}}`. Thrown by validators and request handlers,
 * caught by the router, which turns it into the response.
 */
export class EmulatorRejection extends AgentError {
  readonly status: number;
  /** Value of `error.code` in the response body, such as `invalid_value`. */
  readonly apiCode: string;
  /** Seconds for a `Retry-After` header, when the client may try again later. */
  readonly retryAfterSeconds: number | undefined;

  constructor(status: number, apiCode: string, message: string, retryAfterSeconds?: number) {
    super('ERR_EMULATOR_REJECTION', message);
    this.status = status;
    this.apiCode = apiCode;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/**
 * `check-config`: validates a config file and prints the effective config,
 * with every default applied and secrets redacted, so an operator sees what
 * the daemon would run with.
 */
import { stringify } from 'yaml';

import { ConfigError, EXIT_CONFIG } from '../errors.ts';
import { loadConfig } from './load-config.ts';
import { redactConfig } from './redact-config.ts';

export interface CheckConfigArgs {
  /** Path of the YAML config file. */
  config: string;
  /** Print JSON instead of YAML. */
  json?: boolean;
  /** Variables for `${VAR}` references; `process.env` when omitted. */
  env?: NodeJS.ProcessEnv;
}

/**
 * Formats a config error for the terminal, without a trailing newline. The
 * cause is added when its text is not part of the message already.
 */
export function formatConfigError(error: ConfigError): string {
  let text = `config error: ${error.message}`;
  const cause = error.cause;
  if (cause instanceof Error && !error.message.includes(cause.message)) {
    text += `\n  caused by: ${cause.message}`;
  }
  return text;
}

/**
 * Writes `text` and resolves once the stream has handed it on, so that a
 * caller may call `process.exit()` right after without cutting the output
 * short on a pipe.
 */
function writeText(stream: NodeJS.WritableStream, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(text, (error) => (error ? reject(error) : resolve()));
  });
}

/**
 * Runs `check-config` and returns the exit code: 0 when the config is valid,
 * `EXIT_CONFIG` (78) when it is not, with the error written to `errorOut`.
 * Errors that are not config errors propagate to the caller.
 */
export async function runCheckConfig(
  args: CheckConfigArgs,
  out: NodeJS.WritableStream,
  errorOut: NodeJS.WritableStream = process.stderr,
): Promise<number> {
  let redacted: unknown;
  try {
    const config = await loadConfig(args.config, args.env ?? process.env);
    redacted = redactConfig(config);
  } catch (error) {
    if (error instanceof ConfigError) {
      await writeText(errorOut, `${formatConfigError(error)}\n`);
      return EXIT_CONFIG;
    }
    throw error;
  }

  const text = args.json === true ? `${JSON.stringify(redacted, null, 2)}\n` : stringify(redacted, { lineWidth: 0 });
  await writeText(out, text);
  return 0;
}

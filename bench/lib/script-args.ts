/**
 * Option parsing for the benchmark's helper processes, which are started by
 * the runner but can also be run by hand.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

export type OptionSpec = Record<string, { type: 'string' | 'boolean'; default?: string | boolean; description: string }>;

/** Parses `--name value` options; prints the usage and exits with 64 (EX_USAGE) on an unknown or missing option. */
export function parseScriptOptions(usage: string, spec: OptionSpec, required: string[] = []): Record<string, string | boolean | undefined> {
  const printUsage = (problem?: string): never => {
    const lines = Object.entries(spec).map(([name, option]) => `  --${name}${option.type === 'string' ? ' VALUE' : ''}  ${option.description}`);
    process.stderr.write(`${problem === undefined ? '' : `${problem}\n`}${usage}\n${lines.join('\n')}\n`);
    process.exit(problem === undefined ? 0 : 64);
  };
  let values: Record<string, string | boolean | undefined>;
  try {
    const parsed = parseArgs({
      options: { ...spec, help: { type: 'boolean' } } as ParseArgsConfig['options'],
      strict: true,
      allowPositionals: false,
    });
    values = parsed.values as Record<string, string | boolean | undefined>;
  } catch (error) {
    return printUsage((error as Error).message);
  }
  if (values['help'] === true) {
    printUsage();
  }
  for (const name of required) {
    if (values[name] === undefined) {
      printUsage(`missing option --${name}`);
    }
  }
  return values;
}

/** Reads a numeric option; exits with a message that names the option when it is not a number in range. */
export function numberOption(values: Record<string, string | boolean | undefined>, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const value = Number(values[name]);
  if (!Number.isFinite(value) || value < min || value > max) {
    process.stderr.write(`invalid --${name} ${String(values[name])}; use a number from ${min} to ${max}\n`);
    process.exit(64);
  }
  return value;
}

/** Splits HOST:PORT (IPv6 in brackets) into its parts. */
export function parseHostPort(text: string): { host: string; port: number } {
  const match = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(text);
  if (match === null) {
    throw new Error(`invalid address "${text}"; use HOST:PORT such as 127.0.0.1:5004`);
  }
  return { host: match[1]!, port: Number(match[2]) };
}

/** Writes one JSON line on standard output: how the helper processes report events to the runner. */
export function emitEvent(event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
}

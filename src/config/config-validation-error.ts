/**
 * A config error that lists every problem found in one file, each with the
 * key path and, when the YAML node exists, its line and column.
 */
import { ConfigError } from '../errors.ts';

/** One problem in a config file. */
export interface ConfigProblem {
  /** Key path in the form `jobs[0].streams[1].source.type`; empty for the whole document. */
  keyPath: string;
  /** Description of the problem and its fix, in plain words. */
  message: string;
  /** 1-based line of the offending YAML node, when known. */
  line?: number;
  /** 1-based column of the offending YAML node, when known. */
  column?: number;
}

/** Name printed in place of a file name for config text that came from no file. */
export const UNNAMED_CONFIG = '<config>';

/** Formats one problem as `file:line:column: key.path: message`, the form compilers and editors link. */
export function formatConfigProblem(file: string | undefined, problem: ConfigProblem): string {
  let location = file ?? UNNAMED_CONFIG;
  if (problem.line !== undefined) {
    location += `:${problem.line}`;
    if (problem.column !== undefined) {
      location += `:${problem.column}`;
    }
  }
  const subject = problem.keyPath === '' ? '' : `${problem.keyPath}: `;
  return `${location}: ${subject}${problem.message}`;
}

/** Orders problems as they appear in the file; problems with no position go last, in their original order. */
function sortByPosition(problems: readonly ConfigProblem[]): ConfigProblem[] {
  const rank = (problem: ConfigProblem): [number, number] => [
    problem.line ?? Number.MAX_SAFE_INTEGER,
    problem.column ?? 0,
  ];
  return [...problems].sort((left, right) => {
    const [leftLine, leftColumn] = rank(left);
    const [rightLine, rightColumn] = rank(right);
    return leftLine - rightLine || leftColumn - rightColumn;
  });
}

/**
 * Invalid config with one or more located problems. The message contains
 * one line per problem, under a count line when there are several.
 */
export class ConfigValidationError extends ConfigError {
  readonly problems: readonly ConfigProblem[];

  constructor(file: string | undefined, unsortedProblems: readonly ConfigProblem[]) {
    const problems = sortByPosition(unsortedProblems);
    const lines = problems.map((problem) => formatConfigProblem(file, problem));
    const message =
      lines.length === 1
        ? (lines[0] ?? '')
        : `${lines.length} problems in ${file ?? UNNAMED_CONFIG}:\n${lines.map((line) => `  ${line}`).join('\n')}`;
    super(message, { file, keyPath: problems[0]?.keyPath });
    this.problems = problems;
  }
}

/**
 * Entry point of the benchmark: cost per RTP stream of the agent against a
 * bare relay, with latency and memory. See docs/benchmarks.md.
 *
 *   npm run bench -- --streams 100,500,1000 --seconds 30 --runs 3
 *   npm run bench:soak
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type yargsType from 'yargs';
import { hideBin } from 'yargs/helpers';

import { BenchChild } from './lib/bench-child.ts';
import { runBench } from './lib/bench-runner.ts';
import { SUBJECTS } from './lib/subjects.ts';

// yargs' CommonJS build, as in src/cli/main.ts: the ESM build breaks words apart when it wraps help text.
const yargs = createRequire(import.meta.url)('yargs') as typeof yargsType;

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The speech recording the tests use, unless MODULATE_TEST_AUDIO names another. */
const DEFAULT_AUDIO = process.env['MODULATE_TEST_AUDIO'] ?? join(REPO_ROOT, '..', 'shared', 'audio', 'jfk-16k-mono.wav');

const argv = await yargs(hideBin(process.argv))
  .scriptName('run-bench')
  .usage('$0 [options]\n\nMeasures CPU, memory and latency per RTP stream of the agent and of a bare relay.')
  .option('streams', { type: 'string', default: '100,500,1000', describe: 'Stream counts to measure, comma-separated' })
  .option('seconds', { type: 'number', default: 30, describe: 'Steady-state window per measurement, in seconds' })
  .option('runs', { type: 'number', default: 3, describe: 'Runs per stream count; the report gives medians' })
  .option('subjects', {
    type: 'string',
    default: 'relay,relay-20,agent,agent-mulaw,agent-20',
    describe: `Processes to measure, comma-separated: ${Object.keys(SUBJECTS).join(', ')}`,
  })
  .option('out', { type: 'string', describe: 'Folder for report.json, report.md and the run logs (default: bench/results/<time>)' })
  .option('ramp-per-second', { type: 'number', default: 200, describe: 'Streams started per second' })
  .option('settle-seconds', { type: 'number', default: 15, describe: 'Wait after the ramp before the window, in seconds' })
  .option('phases', { type: 'number', default: 4, describe: 'Generator ticks per 20 ms slot; streams are spread over them' })
  .option('late-margin-ms', { type: 'number', default: 20, describe: 'A frame is late when its latency exceeds its duration plus this, in ms' })
  .option('rss-sample-ms', { type: 'number', default: 1000, describe: 'Interval of RSS readings in the window, in ms' })
  .option('pin', { type: 'boolean', default: true, describe: 'Pin the subject to the last CPU and the load to CPU 0 (needs taskset and 2 CPUs)' })
  .option('extend-step', { type: 'number', default: 0, describe: 'After the listed counts, add this many streams per point until the agent is late; 0 is off' })
  .option('extend-max', { type: 'number', default: 5000, describe: 'Highest stream count the extension measures' })
  .option('max-wait-percent', {
    type: 'number',
    default: 10,
    describe: 'Repeat a measurement whose subject waited for a CPU held by other processes longer than this share of the window, in %',
  })
  .option('attempts', { type: 'number', default: 3, describe: 'Measurements per point at most, when they are disturbed' })
  .option('audio', { type: 'string', default: DEFAULT_AUDIO, describe: 'Speech recording the generator loops (any format ffmpeg reads)' })
  .option('cpu-profile', { type: 'boolean', default: false, describe: 'Write a V8 CPU profile of each subject into its run folder' })
  .option('subject-node-options', {
    type: 'string',
    default: '',
    describe: 'More options for the Node of the subject, space-separated, such as "--trace-gc"',
  })
  .option('resume', {
    type: 'boolean',
    default: false,
    describe: 'Keep the measurements of report.json in --out and measure only the missing points',
  })
  .option('soak', {
    type: 'boolean',
    default: false,
    describe: 'Long run for RSS drift: defaults to --streams 200 --seconds 600 --runs 1 --subjects agent-mulaw --rss-sample-ms 5000',
  })
  .strict()
  .help()
  .parseAsync();

const isOptionGiven = (name: string): boolean => process.argv.some((arg) => arg === `--${name}` || arg.startsWith(`--${name}=`));
const soakDefault = <T>(name: string, value: T, soakValue: T): T => (argv.soak && !isOptionGiven(name) ? soakValue : value);

const streams = soakDefault('streams', argv.streams, '200')
  .split(',')
  .map((text) => Number(text.trim()));
if (streams.some((count) => !Number.isInteger(count) || count < 1)) {
  process.stderr.write(`invalid --streams ${argv.streams}; use positive whole numbers separated by commas, such as 100,500,1000\n`);
  process.exit(64);
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`${signal}: stopping the benchmark processes; report.json keeps the finished measurements\n`);
    BenchChild.killAll();
    process.exit(130);
  });
}

const outDir = argv.out ?? join(REPO_ROOT, 'bench', 'results', new Date().toISOString().replaceAll(':', '-').replace(/\..+$/, ''));

try {
  const report = await runBench({
    repoRoot: REPO_ROOT,
    outDir,
    streams,
    windowSeconds: soakDefault('seconds', argv.seconds, 600),
    runs: soakDefault('runs', argv.runs, 1),
    subjects: soakDefault('subjects', argv.subjects, 'agent-mulaw')
      .split(',')
      .map((name) => name.trim()),
    rampPerSecond: argv['ramp-per-second'],
    settleSeconds: argv['settle-seconds'],
    phases: argv.phases,
    lateMarginMs: argv['late-margin-ms'],
    rssSampleMs: soakDefault('rss-sample-ms', argv['rss-sample-ms'], 5000),
    pin: argv.pin,
    extendStep: argv['extend-step'],
    extendMax: argv['extend-max'],
    maxWaitPercent: argv['max-wait-percent'],
    attempts: Math.max(1, argv.attempts),
    audioFile: argv.audio,
    cpuProfile: argv['cpu-profile'],
    subjectNodeOptions: argv['subject-node-options'].split(' ').filter((option) => option !== ''),
    resume: argv.resume,
    command: `run-bench ${hideBin(process.argv).join(' ')}`.trim(),
    log: (line) => process.stderr.write(`${line}\n`),
  });
  const failed = report.measurements.filter((entry) => entry.error !== undefined).length;
  process.stderr.write(`report written to ${join(outDir, 'report.md')} (${report.measurements.length} measurements, ${failed} failed)\n`);
  process.exitCode = failed === 0 ? 0 : 1;
} catch (error) {
  process.stderr.write(`benchmark failed: ${(error as Error).message}\n`);
  process.exitCode = 1;
}

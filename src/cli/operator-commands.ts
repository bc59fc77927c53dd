/**
 * yargs definitions of the operator commands `status`, `jobs` and `submit`.
 * Each handler sets `process.exitCode` instead of exiting, so that pending
 * output is written first.
 */
import type { Argv, CommandModule } from 'yargs';

import { runJobsCommand, type JobsAction } from './jobs-command.ts';
import { DEFAULT_STATUS_URL, runStatusCommand } from './status-command.ts';
import { runSubmitCommand } from './submit-command.ts';

/** Options shared by the commands that call the Jobs API. */
function withApiOptions<T>(command: Argv<T>) {
  return command
    .option('config', {
      alias: 'c',
      type: 'string',
      describe:
        'Config whose api section to use (the agent\'s, or one with only api); otherwise MODULATE_BASE_URL, MODULATE_ACCOUNT_ID and MODULATE_API_KEY_FILE or MODULATE_API_KEY',
    })
    .option('base-url', { type: 'string', describe: 'Base URL of the Jobs API (overrides MODULATE_BASE_URL)' })
    .option('account-id', { type: 'string', describe: 'Account ID (overrides MODULATE_ACCOUNT_ID)' })
    .option('api-key-file', { type: 'string', describe: 'File that contains the API key (overrides MODULATE_API_KEY_FILE)' });
}

function apiArgs(argv: { config?: string; 'base-url'?: string; 'account-id'?: string; 'api-key-file'?: string }) {
  return {
    ...(argv.config === undefined ? {} : { config: argv.config }),
    ...(argv['base-url'] === undefined ? {} : { baseUrl: argv['base-url'] }),
    ...(argv['account-id'] === undefined ? {} : { accountId: argv['account-id'] }),
    ...(argv['api-key-file'] === undefined ? {} : { apiKeyFile: argv['api-key-file'] }),
  };
}

async function runJobs(argv: Parameters<typeof apiArgs>[0], action: JobsAction): Promise<void> {
  process.exitCode = await runJobsCommand({ ...apiArgs(argv), ...action }, { stdout: process.stdout, stderr: process.stderr });
}

export const statusCommand: CommandModule = {
  command: 'status',
  describe: 'Show each alias of a running agent: state, level, seconds sent, buffered and dropped, reconnects',
  builder: (command) =>
    command
      .option('url', { type: 'string', describe: `Metrics listener of the agent (default: from --config, else ${DEFAULT_STATUS_URL})` })
      .option('config', { alias: 'c', type: 'string', describe: 'Agent config whose service.metrics_listen to read' })
      .option('watch', { alias: 'w', type: 'boolean', default: false, describe: 'Redraw until interrupted' })
      .option('interval-ms', { type: 'number', default: 1000, describe: 'Redraw interval of --watch, in milliseconds' })
      .option('json', { type: 'boolean', default: false, describe: 'Print the raw status JSON' }),
  handler: async (argv) => {
    const args = argv as unknown as { url?: string; config?: string; watch: boolean; 'interval-ms': number; json: boolean };
    process.exitCode = await runStatusCommand(
      {
        ...(args.url === undefined ? {} : { url: args.url }),
        ...(args.config === undefined ? {} : { config: args.config }),
        watch: args.watch,
        intervalMs: Math.max(100, args['interval-ms']),
        json: args.json,
      },
      { stdout: process.stdout, stderr: process.stderr },
    );
  },
};

export const jobsCommand: CommandModule = {
  command: 'jobs',
  describe: 'List, inspect and finalize jobs, and fetch their results',
  builder: (command) =>
    command
      .command(
        'list',
        'List the jobs of the account',
        (sub) =>
          withApiOptions(sub)
            .option('json', { type: 'boolean', default: false, describe: 'Print JSON instead of a table' })
            .option('per-page', { type: 'number', describe: 'Jobs fetched per request, 1 to 100' }),
        async (argv) => {
          await runJobs(argv, {
            action: 'list',
            json: argv.json,
            ...(argv['per-page'] === undefined ? {} : { perPage: argv['per-page'] }),
          });
        },
      )
      .command(
        'get <id>',
        'Show one job and its streams',
        (sub) =>
          withApiOptions(sub)
            .positional('id', { type: 'string', demandOption: true, describe: 'Job ID' })
            .option('json', { type: 'boolean', default: false, describe: 'Print JSON' }),
        async (argv) => {
          await runJobs(argv, { action: 'get', jobId: argv.id, json: argv.json });
        },
      )
      .command(
        'finalize <id>',
        'Finalize a job (PATCH status finalizing); finalizing a finalized job succeeds',
        (sub) =>
          withApiOptions(sub)
            .positional('id', { type: 'string', demandOption: true, describe: 'Job ID' })
            .option('wait', { type: 'boolean', default: true, describe: 'Wait until the job is finalized' })
            .option('timeout-ms', { type: 'number', default: 60000, describe: 'Deadline of --wait, in milliseconds' }),
        async (argv) => {
          await runJobs(argv, { action: 'finalize', jobId: argv.id, wait: argv.wait, timeoutMs: argv['timeout-ms'] });
        },
      )
      .command(
        'results <id>',
        'Fetch every result of a job as JSON Lines',
        (sub) =>
          withApiOptions(sub)
            .positional('id', { type: 'string', demandOption: true, describe: 'Job ID' })
            .option('out', { alias: 'o', type: 'string', describe: 'Write to this file instead of standard output' }),
        async (argv) => {
          await runJobs(argv, { action: 'results', jobId: argv.id, ...(argv.out === undefined ? {} : { out: argv.out }) });
        },
      )
      .demandCommand(1, 'Name a jobs command: list, get, finalize or results'),
  handler: () => undefined,
};

export const submitCommand: CommandModule = {
  command: 'submit <files..>',
  describe: 'Run a file-based job: upload audio files, finalize, wait, and print or write the results',
  builder: (command) =>
    withApiOptions(command)
      .positional('files', { type: 'string', array: true, demandOption: true, describe: 'Audio files to upload' })
      .option('analysis', {
        alias: 'a',
        type: 'string',
        array: true,
        default: ['transcription'],
        describe: 'Analysis to request; repeat for several',
      })
      .option('out', { alias: 'o', type: 'string', describe: 'Write the results to this file instead of standard output' })
      .option('timeout-ms', {
        type: 'number',
        default: 600000,
        describe: 'Deadline for the job to be finalized after the upload, in milliseconds',
      }),
  handler: async (argv) => {
    const args = argv as unknown as Parameters<typeof apiArgs>[0] & {
      files: string[];
      analysis: string[];
      out?: string;
      'timeout-ms': number;
    };
    process.exitCode = await runSubmitCommand(
      {
        ...apiArgs(args),
        files: args.files,
        analyses: args.analysis,
        timeoutMs: args['timeout-ms'],
        ...(args.out === undefined ? {} : { out: args.out }),
      },
      { stdout: process.stdout, stderr: process.stderr },
    );
  },
};

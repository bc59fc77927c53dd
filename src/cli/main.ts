#!/usr/bin/env node
import { createRequire } from 'node:module';

import type yargsType from 'yargs';
import { hideBin } from 'yargs/helpers';

import { runCheckConfig } from '../config/check-config-command.ts';
import { runEmulatorCommand } from '../emulator/emulator-command.ts';
import { EXIT_FAILURE } from '../service/agent.ts';
import { runDemoCommand } from './demo-command.ts';
import { runDevicesCommand } from './devices-command.ts';
import { jobsCommand, statusCommand, submitCommand } from './operator-commands.ts';
import { runRunCommand } from './run-command.ts';
import { AGENT_VERSION } from './version.ts';

const LOG_FORMATS = ['json', 'pretty'] as const;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;

/** Sets the exit code from a command's result without cutting off pending output. */
function finish(code: number): void {
  process.exitCode = code;
}

// yargs' CommonJS build: its ESM build wraps help text at a fixed width and
// breaks words apart, because it ships a simplified line wrapper there.
const yargs = createRequire(import.meta.url)('yargs') as typeof yargsType;

await yargs(hideBin(process.argv))
  .scriptName('modulate-agent')
  .version(AGENT_VERSION)
  .usage('$0 <command> [options]\n\nStreams live voice from sound devices, RTP and files into Modulate Platform realtime jobs.')
  .command(
    'run',
    'Run the agent with a YAML config until its sources end or SIGINT/SIGTERM',
    (command) =>
      command
        .option('config', { alias: 'c', type: 'string', demandOption: true, describe: 'Path of the YAML config file' })
        .option('log-format', { choices: LOG_FORMATS, default: 'json' as const, describe: 'json for machines, pretty for humans' })
        .option('log-level', { choices: LOG_LEVELS, describe: 'Overrides service.log_level' }),
    async (argv) => {
      finish(
        await runRunCommand({
          config: argv.config,
          logFormat: argv['log-format'],
          ...(argv['log-level'] === undefined ? {} : { logLevel: argv['log-level'] }),
        }),
      );
    },
  )
  .command(
    'check-config',
    'Validate a config file and print the effective config with secrets redacted',
    (command) =>
      command
        .option('config', { alias: 'c', type: 'string', demandOption: true, describe: 'Path of the YAML config file' })
        .option('json', { type: 'boolean', default: false, describe: 'Print JSON instead of YAML' }),
    async (argv) => {
      finish(await runCheckConfig({ config: argv.config, json: argv.json }, process.stdout));
    },
  )
  .command(
    'emulator',
    'Run a local Jobs API emulator (no account needed; binds to loopback by default)',
    (command) =>
      command
        .option('port', { alias: 'p', type: 'number', default: 18080, describe: 'TCP port to listen on (0 picks a free one)' })
        .option('host', { type: 'string', default: '127.0.0.1', describe: 'Address to listen on' })
        .option('record-dir', { type: 'string', describe: 'Write each alias\'s received audio to DIR/<job_id>/<alias>.raw' })
        .option('account-id', { type: 'string', describe: 'Account ID the emulator accepts (default: emulator)' })
        .option('api-key', { type: 'string', describe: 'API key the emulator accepts (default: emulator-key)' })
        .option('admin', {
          type: 'boolean',
          default: false,
          describe: 'Serve POST /_emulator/faults for fault injection (drop, close, refuse, pause, restart)',
        })
        .option('log-format', { choices: LOG_FORMATS, default: 'pretty' as const, describe: 'json for machines, pretty for humans' })
        .option('log-level', { choices: LOG_LEVELS, default: 'info' as const, describe: 'Lowest level of the lines logged' }),
    async (argv) => {
      await runEmulatorCommand({
        port: argv.port,
        host: argv.host,
        logFormat: argv['log-format'],
        logLevel: argv['log-level'],
        admin: argv.admin,
        ...(argv['record-dir'] === undefined ? {} : { recordDir: argv['record-dir'] }),
        ...(argv['account-id'] === undefined ? {} : { accountId: argv['account-id'] }),
        ...(argv['api-key'] === undefined ? {} : { apiKey: argv['api-key'] }),
      });
    },
  )
  .command(
    'demo',
    'Run the bundled emulator and a demo config: two aliases, about 10 s of audio, then finalize',
    (command) =>
      command
        .option('config', { type: 'string', describe: 'Demo config to run (default: config/demo.yaml)' })
        .option('log-format', { choices: LOG_FORMATS, default: 'pretty' as const }),
    async (argv) => {
      finish(
        await runDemoCommand({
          logFormat: argv['log-format'],
          ...(argv.config === undefined ? {} : { config: argv.config }),
        }),
      );
    },
  )
  .command(
    'devices',
    'List the sound input devices a device source can capture from (needs naudiodon)',
    (command) => command.option('json', { type: 'boolean', default: false, describe: 'Print JSON instead of a table' }),
    async (argv) => {
      finish(await runDevicesCommand({ json: argv.json }, process.stdout));
    },
  )
  .command(statusCommand)
  .command(jobsCommand)
  .command(submitCommand)
  .demandCommand(1, 'Name a command; see --help')
  .strict()
  .fail((message, error) => {
    if (error !== undefined && error !== null) {
      process.stderr.write(`modulate-agent: ${error.message}\n`);
      process.exit(EXIT_FAILURE);
    }
    // 64 is EX_USAGE from sysexits.h.
    process.stderr.write(`modulate-agent: ${message}\nRun "modulate-agent --help" for usage.\n`);
    process.exit(64);
  })
  .help()
  .parseAsync();

import { formatConfigError } from '../config/check-config-command.ts';
import { loadConfig } from '../config/load-config.ts';
import type { AgentConfig } from '../config/types.ts';
import { ConfigError, EXIT_CONFIG } from '../errors.ts';
import { createLogger, type LogFormat, type Logger } from '../logger.ts';
import { Agent, EXIT_FAILURE } from '../service/agent.ts';
import { deviceCaptures } from '../sources/device/device-capture-registry.ts';
import { AGENT_VERSION } from './version.ts';

export interface RunCommandArgs {
  config: string;
  logFormat?: LogFormat;
  logLevel?: string;
}

/** Loads the config and runs the agent until its sources end or a signal arrives; returns the exit code. */
export async function runRunCommand(args: RunCommandArgs): Promise<number> {
  let config: AgentConfig;
  try {
    config = await loadConfig(args.config);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${formatConfigError(error)}\n`);
      return EXIT_CONFIG;
    }
    throw error;
  }
  const logger = createLogger({
    level: args.logLevel ?? config.service.log_level,
    format: args.logFormat ?? 'json',
    // Results without a results_dir go to standard output, so logs move to standard error.
    ...(config.service.results_dir === undefined ? { fd: 2 } : {}),
  });
  return runAgent(config, logger);
}

/**
 * Runs an agent with signal handling: the first SIGINT or SIGTERM shuts down
 * gracefully, a second one aborts, and SIGHUP reloads the config file.
 */
export async function runAgent(config: AgentConfig, logger: Logger): Promise<number> {
  const agent = new Agent({ config, logger, version: AGENT_VERSION });
  let signalCount = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signalCount += 1;
    if (signalCount === 1) {
      agent.shutdown(signal);
      return;
    }
    agent.abort(`second ${signal}`);
    logger.flush();
    // An open sound-device capture blocks a libuv thread, and process.exit()
    // waits for it forever, so captures are closed first (bounded at 500 ms).
    const capturesClosed = Promise.race([
      deviceCaptures.closeAll(),
      new Promise((resolve) => setTimeout(resolve, 500).unref()),
    ]);
    void capturesClosed.finally(() => {
      // Give the flushed log lines a moment to reach the descriptor.
      setTimeout(() => process.exit(EXIT_FAILURE), 50).unref();
    });
  };
  // SIGHUP reloads the config, as `systemctl reload` sends it (ExecReload=kill -HUP $MAINPID).
  const onHangup = (): void => {
    void agent.reload();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onHangup);
  try {
    return await agent.run();
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onHangup);
    await new Promise<void>((resolve) => logger.flush(() => resolve()));
  }
}

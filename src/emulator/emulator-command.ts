/**
 * `modulate-agent emulator`: runs the Jobs API emulator in the foreground
 * until SIGINT or SIGTERM.
 */
import { createLogger, type LogFormat } from '../logger.ts';
import { DEFAULT_ACCOUNT_ID, DEFAULT_API_KEY, Emulator } from './emulator.ts';
import { ADMIN_FAULTS_PATH } from './admin-endpoint.ts';
import { isLoopbackHost } from './webhook-sender.ts';

export interface EmulatorCommandArgs {
  port: number;
  host: string;
  recordDir?: string;
  accountId?: string;
  apiKey?: string;
  logFormat?: LogFormat;
  logLevel?: string;
  /** Serve the fault-injection endpoint `POST /_emulator/faults`. */
  admin?: boolean;
}

/** Starts the emulator, logs how to reach it, and resolves once a signal has stopped it. */
export async function runEmulatorCommand(args: EmulatorCommandArgs): Promise<void> {
  const logger = createLogger({ level: args.logLevel ?? 'info', format: args.logFormat ?? 'pretty' });
  const log = logger.child({ component: 'emulator' });
  if (!isLoopbackHost(args.host)) {
    log.warn(
      { host: args.host },
      'emulator listens on a non-loopback address; anyone who can reach it can use its test credentials',
    );
  }

  const emulator = await Emulator.start({
    port: args.port,
    host: args.host,
    logger: log,
    adminEndpoint: args.admin ?? false,
    // Nothing reads the in-memory copy in this mode; `recordDir` keeps the audio instead.
    retainAudio: false,
    ...(args.recordDir === undefined ? {} : { recordDir: args.recordDir }),
    ...(args.accountId === undefined ? {} : { accountId: args.accountId }),
    ...(args.apiKey === undefined ? {} : { apiKey: args.apiKey }),
  });

  log.info({ baseUrl: emulator.baseUrl, accountId: emulator.accountId }, 'emulator ready; use this base URL and account ID');
  if (emulator.apiKey === DEFAULT_API_KEY) {
    log.info(`api_key: ${DEFAULT_API_KEY} (default test key)`);
  } else {
    log.info('api_key: the value given with --api-key');
  }
  if (emulator.accountId === DEFAULT_ACCOUNT_ID && emulator.apiKey !== DEFAULT_API_KEY) {
    log.info(`account ID is the default ${DEFAULT_ACCOUNT_ID}; set --account-id as well to change it`);
  }
  if (args.admin === true) {
    log.info({ path: ADMIN_FAULTS_PATH }, 'fault injection endpoint enabled');
  }

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const onSignal = (received: NodeJS.Signals): void => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(received);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  log.info({ signal }, 'stopping emulator');
  await emulator.close();
  await new Promise<void>((resolve) => logger.flush(() => resolve()));
}

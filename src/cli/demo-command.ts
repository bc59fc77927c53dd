import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { formatConfigError } from '../config/check-config-command.ts';
import { loadConfig } from '../config/load-config.ts';
import { ConfigError, EXIT_CONFIG } from '../errors.ts';
import { Emulator } from '../emulator/emulator.ts';
import { createLogger, type LogFormat } from '../logger.ts';
import { runAgent } from './run-command.ts';

export interface DemoCommandArgs {
  config?: string;
  logFormat: LogFormat;
}

const DEMO_CONFIG = fileURLToPath(new URL('../../config/demo.yaml', import.meta.url));

/**
 * Starts the emulator on a free loopback port, runs the demo config against
 * it, and prints what the emulator received and where the results went.
 */
export async function runDemoCommand(args: DemoCommandArgs): Promise<number> {
  const workDir = await mkdtemp(join(tmpdir(), 'modulate-agent-demo-'));
  const logger = createLogger({ level: 'info', format: args.logFormat });
  const emulator = await Emulator.start({
    port: 0,
    recordDir: join(workDir, 'recordings'),
    logger: logger.child({ component: 'emulator' }),
  });
  try {
    const env = {
      ...process.env,
      MODULATE_BASE_URL: emulator.baseUrl,
      MODULATE_ACCOUNT_ID: emulator.accountId,
      MODULATE_API_KEY: emulator.apiKey,
      MODULATE_RESULTS_DIR: join(workDir, 'results'),
    };
    let config;
    try {
      config = await loadConfig(args.config ?? DEMO_CONFIG, env);
    } catch (error) {
      if (error instanceof ConfigError) {
        process.stderr.write(`${formatConfigError(error)}\n`);
        return EXIT_CONFIG;
      }
      throw error;
    }
    const code = await runAgent(config, logger);
    await new Promise<void>((resolve) => logger.flush(() => resolve()));
    // Give pino-pretty's worker a moment to print the last lines before the summary.
    await new Promise((resolve) => setTimeout(resolve, 200));
    process.stdout.write(formatDemoSummary(emulator, join(workDir, 'results')));
    return code;
  } finally {
    await emulator.close();
  }
}

function formatDemoSummary(emulator: Emulator, resultsDir: string): string {
  const lines = ['', 'What the emulator received:'];
  for (const jobId of emulator.listJobIds()) {
    const job = emulator.getJob(jobId);
    lines.push(`  job ${jobId}: ${job?.status ?? 'unknown'}`);
    for (const stream of job?.streams ?? []) {
      const recording = emulator.getRecording(jobId, stream.alias);
      lines.push(
        `    ${stream.alias}: ${(stream.received_ms / 1000).toFixed(2)} s, ${stream.received_bytes} bytes, ` +
          `${recording?.connections ?? 0} connection(s), end-of-stream ${recording?.endOfStream === true ? 'received' : 'missing'}`,
      );
    }
    lines.push(`    results: ${join(resultsDir, `${jobId}.jsonl`)}`);
  }
  lines.push('');
  return `${lines.join('\n')}\n`;
}

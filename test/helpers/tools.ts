import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const execFileAsync = promisify(execFile);

/** Root of the repository. */
export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The 11 s, 16 kHz mono, s16le speech recording that tests stream. */
export const JFK_WAV = process.env['MODULATE_TEST_AUDIO'] ?? join(REPO_ROOT, '..', 'shared', 'audio', 'jfk-16k-mono.wav');

export async function makeTempDir(prefix = 'modulate-agent-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/**
 * Runs ffmpeg with the given arguments and returns its standard output.
 * Throws when ffmpeg is missing, because tests that need it must fail, not skip.
 */
export async function ffmpeg(args: string[]): Promise<Buffer> {
  try {
    const { stdout } = await execFileAsync('ffmpeg', ['-hide_banner', '-loglevel', 'error', ...args], {
      encoding: 'buffer',
      maxBuffer: 256 * 1024 * 1024,
    });
    return stdout;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error('ffmpeg is not installed; install it with "apt-get install -y ffmpeg" (scripts/test-all.sh does)');
    }
    throw error;
  }
}

/** Decodes an audio file to raw s16le PCM with ffmpeg, an independent decoder. */
export async function decodeToS16le(file: string, sampleRateHz?: number, channels?: number): Promise<Buffer> {
  const args = ['-i', file];
  if (sampleRateHz !== undefined) {
    args.push('-ar', String(sampleRateHz));
  }
  if (channels !== undefined) {
    args.push('-ac', String(channels));
  }
  return ffmpeg([...args, '-f', 's16le', '-acodec', 'pcm_s16le', '-']);
}

/** Writes a YAML config into `dir` and returns its path. */
export async function writeConfig(dir: string, yamlText: string, name = 'agent.yaml'): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, yamlText);
  return file;
}

export interface CliRun {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts the CLI from source in a child process. */
export function startCli(args: string[], env: NodeJS.ProcessEnv = {}): CliRun {
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'src/cli/main.ts'), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (data: Buffer) => {
    stdout += data.toString();
  });
  child.stderr?.on('data', (data: Buffer) => {
    stderr += data.toString();
  });
  const exited = once(child, 'exit').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
  }));
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

/** Parses the JSON log lines a run printed. */
export function parseLogLines(text: string): Array<Record<string, unknown>> {
  return text
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Rejects after `timeoutMs` with a message naming what was awaited. */
export async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

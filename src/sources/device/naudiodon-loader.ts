/**
 * Lazy loading of naudiodon's native PortAudio addon, so that hosts without
 * naudiodon run every other source and only device capture and the
 * `devices` command fail, with a message that explains how to install it.
 *
 * The agent loads the addon through naudiodon's own `bindings` dependency
 * instead of `require('naudiodon')`. naudiodon 2.3.6's index.js registers
 * segfault-handler 1.3.0 for the whole process, which writes `crash.log`
 * into the working directory and replaces V8's SIGSEGV handler. With Node
 * 20, a WebAssembly out-of-bounds access (opusscript, the Opus decoder, runs as WebAssembly) then
 * kills the process with SIGSEGV instead of throwing a
 * WebAssembly.RuntimeError. Its AudioIO wrapper also destroys the stream on
 * the first input overflow, while the addon itself reports an overflow as
 * one failed read and keeps capturing.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';

import { SourceError } from '../../errors.ts';

/**
 * Environment variable naming the naudiodon package to load (a path to its
 * folder or a package name) in place of `naudiodon`. Tests point it at a
 * missing folder to check the message of a host without naudiodon.
 */
export const NAUDIODON_MODULE_ENV = 'MODULATE_AGENT_NAUDIODON';

/** Major version whose addon interface this module uses. */
const SUPPORTED_MAJOR_VERSION = 2;

const INSTALL_HINT =
  'install build tools (apt-get install -y build-essential python3), run npm install naudiodon, ' +
  'and approve its install script with npm install-scripts approve naudiodon segfault-handler';

/** A device as naudiodon's `getDevices()` returns it. Latencies are truncated to whole seconds by the addon. */
export interface NaudiodonDeviceInfo {
  id: number;
  name: string;
  maxInputChannels: number;
  maxOutputChannels: number;
  defaultSampleRate: number;
  hostAPIName: string;
}

export interface NaudiodonHostApis {
  defaultHostAPI: number;
  HostAPIs: Array<{
    id: number;
    name: string;
    type: string;
    deviceCount: number;
    /** Global device index of the host API's default input; 4294967295 when it has none. */
    defaultInput: number;
    defaultOutput: number;
  }>;
}

/** Options of one input stream, as the addon reads them (`inOptions`). */
export interface NaudiodonInputOptions {
  deviceId: number;
  channelCount: number;
  /** 1 for 32-bit float, 16 for 16-bit integers. */
  sampleFormat: 1 | 16;
  sampleRate: number;
  /** Frames per PortAudio callback, each queued as one chunk. */
  framesPerBuffer: number;
  /** Chunks queued between PortAudio's thread and JavaScript; the callback blocks when the queue is full. */
  maxQueue: number;
  /** True: a PortAudio status flag (input overflow) fails the next read instead of being printed. */
  closeOnError: boolean;
}

/** Result of one read: `err` carries a PortAudio status such as "portAudio status - input overflow ". */
export interface NaudiodonReadResult {
  err?: string;
  buf?: Buffer;
  finished?: boolean;
}

/** One open PortAudio stream of the addon. */
export interface NaudiodonStream {
  start(): void;
  /** Resolves once `byteLength` bytes were captured, or fewer with `finished` after `quit`. Runs on the libuv threadpool. */
  read(byteLength: number): Promise<NaudiodonReadResult>;
  /** Stops and closes the stream, then releases PortAudio. Runs on the libuv threadpool. */
  quit(mode: 'WAIT' | 'ABORT'): Promise<void>;
}

export interface NaudiodonAddon {
  getDevices(): NaudiodonDeviceInfo[];
  getHostAPIs(): NaudiodonHostApis;
  /** Opens a stream synchronously; throws with PortAudio's error text. */
  create(options: { inOptions: NaudiodonInputOptions }): NaudiodonStream;
}

export interface LoadedNaudiodon {
  addon: NaudiodonAddon;
  version: string;
  packageDir: string;
}

/** naudiodon is missing, failed to build, or has a version whose addon this module does not know. */
export class NaudiodonUnavailableError extends SourceError {}

let loading: Promise<LoadedNaudiodon> | undefined;

/**
 * Loads naudiodon's addon once per process.
 *
 * @throws NaudiodonUnavailableError naming the cause and how to install naudiodon when it is missing, failed to build or has an unsupported version.
 */
export function loadNaudiodon(): Promise<LoadedNaudiodon> {
  if (loading === undefined) {
    const attempt = Promise.resolve().then(loadNow);
    loading = attempt;
    // A failed load is not kept, so the next call tries again after the environment is fixed.
    attempt.catch(() => {
      if (loading === attempt) {
        loading = undefined;
      }
    });
  }
  return loading;
}

function loadNow(): LoadedNaudiodon {
  const specifier = process.env[NAUDIODON_MODULE_ENV] || 'naudiodon';
  const requireHere = createRequire(import.meta.url);
  let packageJsonPath: string;
  let version: string;
  try {
    packageJsonPath = requireHere.resolve(`${specifier}/package.json`);
    version = String((JSON.parse(readFileSync(packageJsonPath, 'utf8')) as { version?: unknown }).version);
  } catch (error) {
    throw unavailable(error);
  }

  const major = Number.parseInt(version, 10);
  if (major !== SUPPORTED_MAJOR_VERSION) {
    throw new NaudiodonUnavailableError(
      `naudiodon ${version} is installed, but the agent uses the addon interface of naudiodon ${SUPPORTED_MAJOR_VERSION}.x; ` +
        `run npm install naudiodon@^2.3.6`,
    );
  }

  const packageDir = dirname(packageJsonPath);
  try {
    const requireInPackage = createRequire(packageJsonPath);
    const bindings = requireInPackage('bindings') as (options: { bindings: string; module_root: string }) => unknown;
    const addon = bindings({ bindings: 'naudiodon.node', module_root: packageDir }) as NaudiodonAddon;
    if (typeof addon.getDevices !== 'function' || typeof addon.create !== 'function') {
      throw new Error(`the addon in ${packageDir} has no getDevices() or create()`);
    }
    return { addon, version, packageDir };
  } catch (error) {
    throw unavailable(error);
  }
}

function unavailable(cause: unknown): NaudiodonUnavailableError {
  const reason = cause instanceof Error ? firstLine(cause.message) : String(cause);
  return new NaudiodonUnavailableError(`naudiodon is not installed or failed to build (${reason}); ${INSTALL_HINT}`, { cause });
}

function firstLine(text: string): string {
  const end = text.indexOf('\n');
  return end === -1 ? text : text.slice(0, end);
}

/**
 * Turns the validated file into per-stream settings. Relative paths are
 * resolved against the config file's folder. `defaults` and the built-in
 * defaults are merged under each stream's own `output` and `delivery`, and
 * rules that span several keys are checked on the merged result.
 */
import { isAbsolute, resolve } from 'node:path';

import { DEFAULT_DELIVERY, DEFAULT_OUTPUT, type RawConfig } from './schema.ts';
import type { DeliveryConfig, JobConfig, OutputConfig, StreamConfig } from './types.ts';
import { formatKeyPath, type KeyPath } from './yaml-locations.ts';

type RawStream = RawConfig['jobs'][number]['streams'][number];
type OutputOverride = RawConfig['defaults']['output'];
type DeliveryOverride = RawConfig['defaults']['delivery'];
type ReconnectOverride = NonNullable<DeliveryOverride['reconnect']>;

/** A rule broken by the merged settings, located by key path. */
export interface ResolvedConfigProblem {
  keyPath: KeyPath;
  message: string;
}

/** G.711 (mu-law and A-law) is defined at 8000 samples per second only. */
const G711_SAMPLE_RATE_HZ = 8000;

function resolvePath(baseDir: string, path: string): string {
  return isAbsolute(path) ? path : resolve(baseDir, path);
}

/**
 * Returns a copy of `raw` with `file` source paths, `api.api_key_file`,
 * `service.results_dir` and `service.state_dir` made absolute against
 * `baseDir`, so they do not depend on the working folder of the daemon.
 */
export function resolveRelativePaths(raw: RawConfig, baseDir: string): RawConfig {
  const api = { ...raw.api };
  if (api.api_key_file !== undefined) {
    api.api_key_file = resolvePath(baseDir, api.api_key_file);
  }
  const service = { ...raw.service };
  if (service.results_dir !== undefined) {
    service.results_dir = resolvePath(baseDir, service.results_dir);
  }
  if (service.state_dir !== undefined) {
    service.state_dir = resolvePath(baseDir, service.state_dir);
  }
  const jobs = raw.jobs.map((job) => ({
    ...job,
    streams: job.streams.map((stream) =>
      stream.source.type === 'file'
        ? { ...stream, source: { ...stream.source, path: resolvePath(baseDir, stream.source.path) } }
        : stream,
    ),
  }));
  return { ...raw, api, service, jobs };
}

/** Copies the keys whose value is not undefined, so an absent override never hides a default. */
function definedEntries<T extends object>(value: T | undefined): Partial<T> {
  const copy: Partial<T> = {};
  if (value === undefined) {
    return copy;
  }
  for (const [key, entry] of Object.entries(value)) {
    if (entry !== undefined) {
      (copy as Record<string, unknown>)[key] = entry;
    }
  }
  return copy;
}

function mergeOutput(defaults: OutputOverride, stream: OutputOverride | undefined): OutputConfig {
  return { ...DEFAULT_OUTPUT, ...definedEntries(defaults), ...definedEntries(stream) };
}

function mergeDelivery(defaults: DeliveryOverride, stream: DeliveryOverride | undefined): DeliveryConfig {
  const { reconnect: defaultReconnect, ...defaultRest } = defaults;
  const { reconnect: streamReconnect, ...streamRest } = stream ?? {};
  return {
    ...DEFAULT_DELIVERY,
    ...definedEntries(defaultRest),
    ...definedEntries(streamRest),
    reconnect: {
      ...DEFAULT_DELIVERY.reconnect,
      ...definedEntries<ReconnectOverride>(defaultReconnect),
      ...definedEntries<ReconnectOverride>(streamReconnect),
    },
  };
}

function mergeStream(raw: RawConfig, stream: RawStream): StreamConfig {
  return {
    alias: stream.alias,
    alias_template: stream.alias_template,
    source: stream.source,
    output: mergeOutput(raw.defaults.output, stream.output),
    delivery: mergeDelivery(raw.defaults.delivery, stream.delivery),
  };
}

/** Merges `defaults` and the built-in defaults into every stream. */
export function mergeJobs(raw: RawConfig): JobConfig[] {
  return raw.jobs.map((job) => ({
    name: job.name,
    analyses: job.analyses,
    create_body: job.create_body,
    streams: job.streams.map((stream) => mergeStream(raw, stream)),
  }));
}

/** Names where a merged setting came from, so that a message points at the line to change. */
function originOf(
  key: string,
  streamLayer: Record<string, unknown> | undefined,
  defaultsLayer: Record<string, unknown> | undefined,
  defaultsName: string,
): string {
  if (streamLayer?.[key] !== undefined) {
    return 'set on this stream';
  }
  if (defaultsLayer?.[key] !== undefined) {
    return `from ${defaultsName}`;
  }
  return 'built-in default';
}

function greatestCommonDivisor(a: number, b: number): number {
  return b === 0 ? a : greatestCommonDivisor(b, a % b);
}

function checkStream(
  raw: RawConfig,
  jobIndex: number,
  streamIndex: number,
  merged: StreamConfig,
): ResolvedConfigProblem[] {
  const problems: ResolvedConfigProblem[] = [];
  const rawStream = raw.jobs[jobIndex]?.streams[streamIndex];
  const streamPath = ['jobs', jobIndex, 'streams', streamIndex];
  const { output, delivery } = merged;

  const outputOrigin = (key: string): string =>
    originOf(key, rawStream?.output, raw.defaults.output, 'defaults.output');
  const deliveryOrigin = (key: string): string =>
    originOf(key, rawStream?.delivery, raw.defaults.delivery, 'defaults.delivery');
  const reconnectOrigin = (key: string): string =>
    originOf(key, rawStream?.delivery?.reconnect, raw.defaults.delivery.reconnect, 'defaults.delivery.reconnect');

  if ((output.format === 'mulaw' || output.format === 'alaw') && output.sample_rate_hz !== G711_SAMPLE_RATE_HZ) {
    problems.push({
      keyPath: [...streamPath, 'output', 'sample_rate_hz'],
      message:
        `output.format ${output.format} (${outputOrigin('format')}) is G.711, defined at 8000 Hz only, ` +
        `but output.sample_rate_hz is ${output.sample_rate_hz} (${outputOrigin('sample_rate_hz')}); ` +
        'set output.sample_rate_hz: 8000 or use format s16le',
    });
  }

  // A frame contains whole samples: sample_rate_hz * frame_ms / 1000 must be an integer,
  // so frame_ms must be a multiple of 1000 / gcd(sample_rate_hz, 1000).
  if ((output.sample_rate_hz * output.frame_ms) % 1000 !== 0) {
    const samples = (output.sample_rate_hz * output.frame_ms) / 1000;
    const stepMs = 1000 / greatestCommonDivisor(output.sample_rate_hz, 1000);
    const suggestedMs = Math.ceil(output.frame_ms / stepMs) * stepMs;
    problems.push({
      keyPath: [...streamPath, 'output', 'frame_ms'],
      message:
        `output.frame_ms ${output.frame_ms} (${outputOrigin('frame_ms')}) at ${output.sample_rate_hz} Hz ` +
        `gives ${samples} samples per frame; use a multiple of ${stepMs} ms, such as ${suggestedMs}`,
    });
  }

  if (delivery.low_water_bytes >= delivery.high_water_bytes) {
    problems.push({
      keyPath: [...streamPath, 'delivery', 'low_water_bytes'],
      message:
        `delivery.low_water_bytes ${delivery.low_water_bytes} (${deliveryOrigin('low_water_bytes')}) must be ` +
        `less than delivery.high_water_bytes ${delivery.high_water_bytes} (${deliveryOrigin('high_water_bytes')})`,
    });
  }

  const { reconnect } = delivery;
  if (reconnect.initial_delay_ms > reconnect.max_delay_ms) {
    problems.push({
      keyPath: [...streamPath, 'delivery', 'reconnect', 'initial_delay_ms'],
      message:
        `delivery.reconnect.initial_delay_ms ${reconnect.initial_delay_ms} ` +
        `(${reconnectOrigin('initial_delay_ms')}) must not exceed delivery.reconnect.max_delay_ms ` +
        `${reconnect.max_delay_ms} (${reconnectOrigin('max_delay_ms')})`,
    });
  }

  return problems;
}

const WILDCARD_HOSTS = new Set(['0.0.0.0', '[::]', '[0:0:0:0:0:0:0:0]']);

/** Splits `HOST:PORT` (IPv6 hosts in brackets); the schema has checked the form already. */
function splitHostPort(listen: string): { host: string; port: number } {
  const colon = listen.lastIndexOf(':');
  return { host: listen.slice(0, colon), port: Number(listen.slice(colon + 1)) };
}

/** True when two UDP listen addresses cannot both be bound: same port, and same host or a wildcard. */
function listenAddressesClash(left: string, right: string): boolean {
  const a = splitHostPort(left);
  const b = splitHostPort(right);
  if (a.port === 0 || a.port !== b.port) {
    return false;
  }
  return a.host === b.host || WILDCARD_HOSTS.has(a.host) || WILDCARD_HOSTS.has(b.host);
}

/** Checks the rules that span keys, streams or jobs on the merged settings. */
export function checkResolvedJobs(raw: RawConfig, jobs: readonly JobConfig[]): ResolvedConfigProblem[] {
  const problems: ResolvedConfigProblem[] = [];
  const jobNames = new Map<string, number>();
  const rtpListeners: { listen: string; path: KeyPath }[] = [];

  jobs.forEach((job, jobIndex) => {
    const firstIndex = jobNames.get(job.name);
    if (firstIndex === undefined) {
      jobNames.set(job.name, jobIndex);
    } else {
      problems.push({
        keyPath: ['jobs', jobIndex, 'name'],
        message: `duplicate job name "${job.name}" (already used by jobs[${firstIndex}]); each job needs its own name`,
      });
    }

    job.streams.forEach((stream, streamIndex) => {
      problems.push(...checkStream(raw, jobIndex, streamIndex, stream));

      if (stream.source.type === 'device' && raw.service.results_dir === undefined) {
        // naudiodon's native code prints status lines to standard output
        // when it opens and closes a device, which would corrupt results there.
        problems.push({
          keyPath: ['jobs', jobIndex, 'streams', streamIndex, 'source', 'type'],
          message:
            'a device source needs service.results_dir, because the sound library prints to standard output, ' +
            'where results would otherwise go; set service.results_dir: /var/lib/modulate-agent/results',
        });
      }

      if (stream.source.type !== 'rtp') {
        return;
      }
      const path = ['jobs', jobIndex, 'streams', streamIndex, 'source', 'listen'];
      const { listen } = stream.source;
      const clash = rtpListeners.find((other) => listenAddressesClash(other.listen, listen));
      if (clash !== undefined) {
        problems.push({
          keyPath: path,
          message:
            `${listen} clashes with ${clash.listen} of ${formatKeyPath(clash.path)}; ` +
            'each rtp source needs its own UDP port ' +
            '(one source can demultiplex many senders with alias_template)',
        });
      }
      rtpListeners.push({ listen, path });
    });
  });

  return problems;
}

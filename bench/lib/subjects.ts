/**
 * The processes under test: the agent in the output formats operators use,
 * and the bare relay with the same framing as the baseline.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Alias of the stream of SSRC x is `bench-x`, for the agent and the relay alike. */
export const ALIAS_PREFIX = 'bench-';
export const BENCH_ACCOUNT_ID = 'bench';
export const BENCH_API_KEY = 'bench-key';
/** Receive buffer requested for the RTP socket, in bytes; Linux caps it at net.core.rmem_max. */
export const RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024;

export interface SubjectSpec {
  name: string;
  kind: 'relay' | 'agent';
  /** Audio per WebSocket message, in ms. */
  frameMs: number;
  /** Output of the agent; the relay always sends PCMU's mulaw 8000 Hz. */
  output: { format: 's16le' | 'mulaw'; sampleRateHz: number };
  /** Relay subject that is the baseline of an agent subject: the one with the same framing. */
  baseline: string | undefined;
  description: string;
}

export const SUBJECTS: Record<string, SubjectSpec> = {
  relay: {
    name: 'relay',
    kind: 'relay',
    frameMs: 100,
    output: { format: 'mulaw', sampleRateHz: 8000 },
    baseline: undefined,
    description: 'bare relay, 5 payloads (100 ms) per message',
  },
  'relay-20': {
    name: 'relay-20',
    kind: 'relay',
    frameMs: 20,
    output: { format: 'mulaw', sampleRateHz: 8000 },
    baseline: undefined,
    description: 'bare relay, one payload (20 ms) per message',
  },
  agent: {
    name: 'agent',
    kind: 'agent',
    frameMs: 100,
    output: { format: 's16le', sampleRateHz: 16000 },
    baseline: 'relay',
    description: 'agent, s16le 16 kHz mono, frame_ms 100 (the default output)',
  },
  'agent-mulaw': {
    name: 'agent-mulaw',
    kind: 'agent',
    frameMs: 100,
    output: { format: 'mulaw', sampleRateHz: 8000 },
    baseline: 'relay',
    description: 'agent, mulaw 8 kHz mono (no resampler), frame_ms 100',
  },
  'agent-20': {
    name: 'agent-20',
    kind: 'agent',
    frameMs: 20,
    output: { format: 's16le', sampleRateHz: 16000 },
    baseline: 'relay-20',
    description: 'agent, s16le 16 kHz mono, frame_ms 20',
  },
};

export interface SubjectLaunch {
  sinkPort: number;
  udpPort: number;
  streams: number;
  runDir: string;
  /** Folder for a V8 CPU profile of the subject; none when undefined. */
  cpuProfileDir: string | undefined;
  /** More options for the subject's Node, such as --trace-gc. */
  nodeOptions: string[];
}

/** Arguments after the Node executable that start the subject; writes the agent's config into `runDir`. */
export async function subjectNodeArgs(spec: SubjectSpec, launch: SubjectLaunch): Promise<string[]> {
  const profile = [
    ...(launch.cpuProfileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', launch.cpuProfileDir]),
    ...launch.nodeOptions,
  ];
  if (spec.kind === 'relay') {
    return [
      ...profile,
      '--import',
      'tsx',
      'bench/bare-relay.ts',
      '--listen',
      `127.0.0.1:${launch.udpPort}`,
      '--base-url',
      `http://127.0.0.1:${launch.sinkPort}`,
      '--alias-prefix',
      ALIAS_PREFIX,
      '--frame-packets',
      String(spec.frameMs / 20),
      '--receive-buffer-bytes',
      String(RECEIVE_BUFFER_BYTES),
    ];
  }
  const configFile = join(launch.runDir, 'agent.yaml');
  await writeFile(configFile, agentConfigYaml(spec, launch));
  return [...profile, '--import', 'tsx', 'src/cli/main.ts', 'run', '--config', configFile];
}

/** Config of the agent under test: what an operator would write, with limits raised for the stream count. */
export function agentConfigYaml(spec: SubjectSpec, launch: SubjectLaunch): string {
  return `# Written by the benchmark runner for one measurement.
api:
  base_url: http://127.0.0.1:${launch.sinkPort}
  account_id: ${BENCH_ACCOUNT_ID}
  api_key: ${BENCH_API_KEY}
defaults:
  output:
    format: ${spec.output.format}
    sample_rate_hz: ${spec.output.sampleRateHz}
    channels: 1
    frame_ms: ${spec.frameMs}
jobs:
  - name: bench
    analyses: [transcription]
    streams:
      - alias_template: "${ALIAS_PREFIX}{ssrc}"
        source:
          type: rtp
          listen: "127.0.0.1:${launch.udpPort}"
          max_streams: ${launch.streams + 16}
          receive_buffer_bytes: ${RECEIVE_BUFFER_BYTES}
service:
  results_dir: ${JSON.stringify(join(launch.runDir, 'results'))}
  log_level: info
  shutdown_timeout_ms: 120000
  finalize_timeout_ms: 60000
`;
}

import type { DeliveryConfig, OutputConfig, RawConfig, SourceConfig } from './schema.ts';

export type { DeliveryConfig, OutputConfig, SourceConfig } from './schema.ts';
export type {
  DeviceSourceConfig,
  FileSourceConfig,
  RtpSourceConfig,
  ToneSourceConfig,
} from './schema.ts';

/** One stream after `defaults` are merged into it. */
export interface StreamConfig {
  /** Set for a fixed alias; undefined for an RTP source that demuxes by SSRC. */
  alias: string | undefined;
  /** Set instead of `alias` for RTP demux, such as `room7-{ssrc}`. */
  alias_template: string | undefined;
  source: SourceConfig;
  output: OutputConfig;
  delivery: DeliveryConfig;
}

export interface JobConfig {
  name: string;
  analyses: string[];
  create_body: Record<string, unknown>;
  streams: StreamConfig[];
}

/**
 * Validated config with every default applied and the API key read from its
 * file or the environment. `file` is the path the config was loaded from.
 */
export interface AgentConfig {
  file: string | undefined;
  api: Omit<RawConfig['api'], 'api_key' | 'api_key_file'> & { api_key: string };
  jobs: JobConfig[];
  service: RawConfig['service'];
}

/**
 * Schema of the agent's YAML config. The same zod schema validates files at
 * load time and generates `config/schema.json` for editors.
 *
 * Keys are snake_case and every quantity names its unit (`_ms`, `_hz`,
 * `_bytes`), because operators read and write this file by hand.
 */
import { z } from 'zod';

import { ALIAS_PATTERN, DEFAULT_BASE_URL, STREAM_MAX_CHANNELS, STREAM_SAMPLE_RATES_HZ } from '../jobs/protocol.ts';

const positiveMs = z.number().int().positive();

const sampleRateHz = z
  .number()
  .int()
  .refine((value) => (STREAM_SAMPLE_RATES_HZ as readonly number[]).includes(value), {
    message: `sample rate must be one of ${STREAM_SAMPLE_RATES_HZ.join(', ')} Hz`,
  })
  // The refinement is invisible to JSON Schema; the enum lets editors list the rates.
  .meta({ enum: [...STREAM_SAMPLE_RATES_HZ] });

/** Output encodings the agent can produce on a stream. */
export const OUTPUT_ENCODINGS = ['s16le', 'mulaw', 'alaw'] as const;

export const outputSchema = z.strictObject({
  format: z.enum(OUTPUT_ENCODINGS).describe('Encoding sent on the stream: s16le (preferred), mulaw or alaw.'),
  sample_rate_hz: sampleRateHz.describe('Sample rate sent on the stream, in Hz.'),
  channels: z.number().int().min(1).max(STREAM_MAX_CHANNELS).describe('Channel count sent on the stream.'),
  frame_ms: z
    .number()
    .int()
    .min(10)
    .max(1000)
    .describe('Duration of audio in one WebSocket binary frame, in milliseconds.'),
});

export const reconnectSchema = z.strictObject({
  initial_delay_ms: positiveMs.describe('First backoff delay before a reconnect, in milliseconds.'),
  max_delay_ms: positiveMs.describe('Cap of the backoff delay, in milliseconds.'),
  max_attempts: z
    .number()
    .int()
    .min(0)
    .describe('Reconnect attempts in a row before the stream gives up; 0 retries for as long as the job is active.'),
  stable_after_ms: positiveMs.describe(
    'A connection open for this long resets the attempt count, in milliseconds.',
  ),
});

export const deliverySchema = z.strictObject({
  max_outage_ms: z
    .number()
    .int()
    .min(0)
    .describe('Audio kept while a stream is disconnected or slow, in milliseconds; older audio is dropped.'),
  high_water_bytes: z
    .number()
    .int()
    .positive()
    .describe('Sending pauses while the socket buffers more than this many bytes.'),
  low_water_bytes: z.number().int().min(0).describe('Sending resumes once the socket buffer drains below this.'),
  ping_interval_ms: positiveMs.describe('Interval of WebSocket pings, in milliseconds.'),
  pong_timeout_ms: positiveMs.describe('A connection with no pong for this long is replaced, in milliseconds.'),
  done_timeout_ms: positiveMs.describe(
    'Deadline for the server\'s "done" message after end-of-stream, in milliseconds.',
  ),
  reconnect: reconnectSchema,
});

const fileSourceSchema = z.strictObject({
  type: z.literal('file'),
  path: z.string().min(1).describe('WAV file to stream (PCM 8, 16, 24 or 32 bit, or 32-bit float).'),
  realtime: z
    .boolean()
    .default(true)
    .describe('Pace the file at real time; false sends as fast as the socket accepts.'),
});

const toneSourceSchema = z.strictObject({
  type: z.literal('tone'),
  frequency_hz: z.number().positive().max(20000).default(440).describe('Frequency of the sine tone, in Hz.'),
  level_dbfs: z.number().max(0).default(-20).describe('Peak level of the tone, in dBFS.'),
  sample_rate_hz: z.number().int().min(8000).max(192000).default(48000).describe('Generated sample rate, in Hz.'),
  channels: z.number().int().min(1).max(STREAM_MAX_CHANNELS).default(1).describe('Generated channel count.'),
  duration_ms: positiveMs.optional().describe('Length of the tone, in milliseconds; endless when omitted.'),
  speech_like: z
    .boolean()
    .default(false)
    .describe('Modulate the tone in syllable-like bursts so that voice activity detectors find segments.'),
});

const hostPort = z
  .string()
  .regex(/^(\[[0-9A-Fa-f:.]+\]|[^:\s]+):\d{1,5}$/, 'must be HOST:PORT, with IPv6 hosts in brackets ([::1]:5004)')
  // `!(port > 65535)` passes text without a numeric port, which the regex above already reports.
  .refine((value) => !(Number(value.slice(value.lastIndexOf(':') + 1)) > 65535), 'port must be 0 to 65535');

const rtpmap = z
  .string()
  .regex(/^[A-Za-z0-9_-]+\/\d+(\/\d+)?$/, 'must be ENCODING/CLOCK_RATE[/CHANNELS] as in SDP rtpmap, e.g. opus/48000/2');

const rtpSourceSchema = z.strictObject({
  type: z.literal('rtp'),
  listen: hostPort.describe('UDP address to receive RTP on, such as 127.0.0.1:5004 or [::1]:5004.'),
  allow_from: z
    .array(z.string().min(1))
    .optional()
    .describe('Sender IP addresses accepted; datagrams from others are dropped and counted.'),
  payload_types: z
    .record(
      z
        .string()
        .regex(/^\d+$/, 'payload type must be a number from 0 to 127')
        .refine((value) => !(Number(value) > 127), 'payload type must be a number from 0 to 127'),
      rtpmap,
    )
    .default({})
    .describe('Dynamic payload types, mapped like SDP rtpmap: {111: "opus/48000/2", 96: "L16/16000/1"}.'),
  jitter_ms: z.number().int().min(0).max(2000).default(60).describe('Reorder window of the jitter buffer, in ms.'),
  fill_gaps: z.boolean().default(true).describe('Fill silence between talkspurts so results keep wall-clock time.'),
  max_gap_fill_ms: z.number().int().min(0).default(10000).describe('Longest silence filled at once, in ms.'),
  idle_end_ms: positiveMs.default(30000).describe('A demuxed SSRC with no packets for this long ends its stream.'),
  max_streams: z.number().int().positive().default(64).describe('Most SSRC streams this source opens at once.'),
  receive_buffer_bytes: z.number().int().positive().optional().describe('Requested UDP socket receive buffer.'),
});

const deviceSourceSchema = z.strictObject({
  type: z.literal('device'),
  device: z
    .union([z.string().min(1), z.number().int().min(0)])
    .default('default')
    .describe('Input device: "default", a device index, or a substring of its name.'),
  channels: z
    .array(z.number().int().min(1))
    .min(1)
    .optional()
    .describe(
      'Device channels (1-based) this stream takes; several are downmixed. When omitted: every channel of a device with up to 8, the first 2 of an ALSA plugin device that reports more.',
    ),
  sample_rate: z.number().int().positive().optional().describe('Capture rate in Hz; the device default when omitted.'),
});

export const sourceSchema = z.discriminatedUnion('type', [
  fileSourceSchema,
  toneSourceSchema,
  rtpSourceSchema,
  deviceSourceSchema,
]);

const outputOverride = outputSchema.partial();
const deliveryOverride = deliverySchema.extend({ reconnect: reconnectSchema.partial() }).partial();

const aliasSchema = z
  .string()
  .regex(ALIAS_PATTERN, 'alias must be 1 to 64 characters of A-Z a-z 0-9 . _ -');

export const streamSchema = z
  .strictObject({
    alias: aliasSchema.optional().describe('Name of this audio source in the job.'),
    alias_template: z
      .string()
      .includes('{ssrc}', { message: 'alias_template must contain {ssrc}' })
      // An SSRC is a 32-bit number: at most 10 characters in decimal, 8 in hex.
      .refine(
        (template) => !template.includes('{ssrc}') || ALIAS_PATTERN.test(template.replaceAll('{ssrc}', '4294967295')),
        'alias_template must give aliases of 1 to 64 characters of A-Z a-z 0-9 . _ - once {ssrc} is replaced',
      )
      .optional()
      .describe('RTP only: one stream per SSRC, named by this template, such as room7-{ssrc}.'),
    source: sourceSchema,
    output: outputOverride.optional().describe('Overrides of defaults.output for this stream.'),
    delivery: deliveryOverride.optional().describe('Overrides of defaults.delivery for this stream.'),
  })
  .superRefine((stream, ctx) => {
    if ((stream.alias === undefined) === (stream.alias_template === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'set exactly one of alias and alias_template', path: ['alias'] });
    }
    if (stream.alias_template !== undefined && stream.source.type !== 'rtp') {
      ctx.addIssue({
        code: 'custom',
        message: 'alias_template is only valid with an rtp source; use alias',
        path: ['alias_template'],
      });
    }
  });

export const jobSchema = z
  .strictObject({
    name: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,64}$/, 'job name must be 1 to 64 characters of A-Z a-z 0-9 . _ -')
      .describe('Local name of the job, used in logs, metrics and state.'),
    analyses: z.array(z.string().min(1)).min(1).describe('Analyses requested for the job, passed through as given.'),
    create_body: z
      .record(z.string(), z.unknown())
      .default({})
      .describe('Fields merged into the POST /jobs body as given; they override the generated ones.'),
    streams: z.array(streamSchema).min(1),
  })
  .superRefine((job, ctx) => {
    const seen = new Map<string, number>();
    job.streams.forEach((stream, index) => {
      const alias = stream.alias ?? stream.alias_template;
      if (alias === undefined) {
        return;
      }
      const first = seen.get(alias);
      if (first !== undefined) {
        ctx.addIssue({
          code: 'custom',
          message: `duplicate alias "${alias}" (already used by streams[${first}]); each alias in a job must be unique`,
          path: ['streams', index, stream.alias === undefined ? 'alias_template' : 'alias'],
        });
      } else {
        seen.set(alias, index);
      }
    });
  });

export const apiSchema = z
  .strictObject({
    base_url: z.url({ protocol: /^https?$/ }).default(DEFAULT_BASE_URL).describe('Base URL of the Jobs API.'),
    account_id: z.string().min(1).describe('Account ID, the user name of HTTP Basic auth.'),
    api_key: z.string().min(1).optional().describe('API key; prefer api_key_file so the key stays out of the file.'),
    api_key_file: z
      .string()
      .min(1)
      .optional()
      .describe('File holding the API key, such as ${CREDENTIALS_DIRECTORY}/api_key under systemd.'),
    auth: z
      .enum(['basic', 'query'])
      .default('basic')
      .describe('basic: Authorization header; query: api_key query parameter on stream upgrades.'),
    request_timeout_ms: positiveMs.default(10000).describe('Timeout of one HTTP request, in milliseconds.'),
  })
  .superRefine((api, ctx) => {
    if (api.api_key === undefined && api.api_key_file === undefined) {
      ctx.addIssue({
        code: 'custom',
        message: 'no API key: set api_key_file (preferred) or api_key',
        path: ['api_key_file'],
      });
    }
    if (api.api_key !== undefined && api.api_key_file !== undefined) {
      ctx.addIssue({
        code: 'custom',
        message: 'api_key and api_key_file are both set; keep only one of them',
        path: ['api_key'],
      });
    }
  });

export const DEFAULT_OUTPUT = { format: 's16le', sample_rate_hz: 16000, channels: 1, frame_ms: 100 } as const;

export const DEFAULT_DELIVERY = {
  max_outage_ms: 60000,
  high_water_bytes: 262144,
  low_water_bytes: 65536,
  // Well under the server's 30 s idle limit and the 60 s idle timeout of common proxies.
  ping_interval_ms: 10000,
  pong_timeout_ms: 10000,
  done_timeout_ms: 10000,
  reconnect: { initial_delay_ms: 250, max_delay_ms: 10000, max_attempts: 0, stable_after_ms: 10000 },
} as const;

export const serviceSchema = z.strictObject({
  results_dir: z
    .string()
    .min(1)
    .optional()
    .describe('Folder for <job_id>.jsonl result files; results go to standard output when omitted.'),
  state_dir: z.string().min(1).optional().describe('Folder for the state file that records active jobs.'),
  finalize_orphaned_jobs: z
    .boolean()
    .default(true)
    .describe('At start, finalize jobs that the state file lists from a run that crashed; false only reports them.'),
  shutdown_timeout_ms: positiveMs.default(20000).describe('Deadline of the whole shutdown, in milliseconds.'),
  finalize_timeout_ms: positiveMs
    .default(15000)
    .describe('Deadline for a job to reach "finalized" after PATCH, in milliseconds.'),
  metrics_listen: hostPort.optional().describe('Address of the Prometheus metrics endpoint, such as 127.0.0.1:9464.'),
  log_level: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace'])
    .default('info')
    .describe('Lowest level of log lines written.'),
  stats_interval_ms: positiveMs.default(10000).describe('Interval of the periodic per-stream stats log line.'),
});

export const configSchema = z.strictObject({
  api: apiSchema,
  defaults: z
    .strictObject({
      output: outputOverride.default({}),
      delivery: deliveryOverride.default({}),
    })
    .default({ output: {}, delivery: {} }),
  jobs: z.array(jobSchema).min(1),
  service: serviceSchema.default({
    finalize_orphaned_jobs: true,
    shutdown_timeout_ms: 20000,
    finalize_timeout_ms: 15000,
    log_level: 'info',
    stats_interval_ms: 10000,
  }),
});

/** Config as written in the YAML file, after defaults of the schema are applied. */
export type RawConfig = z.output<typeof configSchema>;
export type SourceConfig = z.output<typeof sourceSchema>;
export type FileSourceConfig = z.output<typeof fileSourceSchema>;
export type ToneSourceConfig = z.output<typeof toneSourceSchema>;
export type RtpSourceConfig = z.output<typeof rtpSourceSchema>;
export type DeviceSourceConfig = z.output<typeof deviceSourceSchema>;
export type OutputConfig = z.output<typeof outputSchema>;
export type DeliveryConfig = z.output<typeof deliverySchema>;

/**
 * Strict validation of what clients send: job bodies, the PATCH body and the
 * query of a stream upgrade. Each check throws an EmulatorRejection whose
 * message names the field, the value received and what is allowed.
 */
import {
  ALIAS_PATTERN,
  API_KEY_QUERY_PARAM,
  CONTAINER_AUDIO_FORMATS,
  FINALIZE_BODY,
  RAW_AUDIO_FORMATS,
  STREAM_MAX_CHANNELS,
  STREAM_SAMPLE_RATES_HZ,
  isContainerAudioFormat,
  isRawAudioFormat,
  type FinalizationTrigger,
  type JobMode,
  type StreamAudioFormat,
} from '../jobs/protocol.ts';
import { EmulatorRejection } from './emulator-rejection.ts';

/** Audio format of one alias: what its stream declared or its first connection's query carried. */
export interface StreamFormat {
  audioFormat: StreamAudioFormat;
  /** Present for raw formats only. */
  sampleRateHz?: number;
  /** Present for raw formats only. */
  channels?: number;
}

export interface ValidatedJobRequest {
  mode: JobMode;
  analyses: string[];
  declaredStreams: Map<string, StreamFormat>;
  triggers: FinalizationTrigger[];
  webhookUrls: string[];
}

const AUDIO_FORMAT_NAMES = [...Object.keys(RAW_AUDIO_FORMATS), ...CONTAINER_AUDIO_FORMATS].join(', ');

function invalid(message: string): EmulatorRejection {
  return new EmulatorRejection(422, 'invalid_value', message);
}

function describe(value: unknown): string {
  return value === undefined ? 'nothing' : JSON.stringify(value);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Parses a JSON request body; invalid JSON is a 400, as opposed to the 422 of valid JSON with invalid values. */
export function parseJsonBody(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new EmulatorRejection(400, 'invalid_json', `request body is not valid JSON: ${(error as Error).message}`);
  }
}

/** Validates the body of `POST /jobs`. Fields the contract does not name are accepted and ignored. */
export function validateCreateJobBody(body: unknown): ValidatedJobRequest {
  if (!isPlainObject(body)) {
    throw invalid(`request body must be a JSON object, got ${describe(body)}`);
  }

  const mode = body['mode'];
  if (mode !== 'realtime' && mode !== 'file') {
    throw invalid(`mode must be "realtime" or "file", got ${describe(mode)}`);
  }

  const analyses = body['analyses'];
  if (!Array.isArray(analyses) || analyses.length === 0) {
    throw invalid(`analyses must be a non-empty array of strings, got ${describe(analyses)}`);
  }
  analyses.forEach((analysis, index) => {
    if (typeof analysis !== 'string' || analysis === '') {
      throw invalid(`analyses[${index}] must be a non-empty string, got ${describe(analysis)}`);
    }
  });

  const declaredStreams = validateStreamDeclarations(body['streams'], mode);
  const triggers = validateTriggers(body['finalization_trigger']);
  const webhookUrls = validateResultsDeliveries(body['results_deliveries']);

  const metadata = body['metadata'];
  if (metadata !== undefined && !isPlainObject(metadata)) {
    throw invalid(`metadata must be a JSON object, got ${describe(metadata)}`);
  }

  return { mode, analyses: analyses as string[], declaredStreams, triggers, webhookUrls };
}

function validateStreamDeclarations(value: unknown, mode: JobMode): Map<string, StreamFormat> {
  const declared = new Map<string, StreamFormat>();
  if (value === undefined) {
    return declared;
  }
  if (!Array.isArray(value)) {
    throw invalid(`streams must be an array of stream declarations, got ${describe(value)}`);
  }
  if (mode !== 'realtime' && value.length > 0) {
    throw invalid('streams can only be declared for a realtime job; remove streams or set mode to "realtime"');
  }
  value.forEach((entry, index) => {
    const where = `streams[${index}]`;
    if (!isPlainObject(entry)) {
      throw invalid(`${where} must be an object with alias and audio_format, got ${describe(entry)}`);
    }
    const alias = entry['alias'];
    if (typeof alias !== 'string' || !ALIAS_PATTERN.test(alias)) {
      throw invalid(`${where}.alias must be 1 to 64 characters of A-Z a-z 0-9 . _ -, got ${describe(alias)}`);
    }
    if (declared.has(alias)) {
      throw invalid(`${where}.alias ${JSON.stringify(alias)} is declared twice; each alias names one source`);
    }
    const format = validateStreamFormat(
      { audioFormat: entry['audio_format'], sampleRateHz: entry['sample_rate'], channels: entry['num_channels'] },
      { audioFormat: `${where}.audio_format`, sampleRateHz: `${where}.sample_rate`, channels: `${where}.num_channels` },
    );
    if (typeof format === 'string') {
      throw invalid(format);
    }
    declared.set(alias, format);
  });
  return declared;
}

/**
 * Checks an audio format with its rate and channel count, given as numbers
 * (JSON) or already converted from query strings. Returns the format, or a
 * message naming the first invalid field.
 */
function validateStreamFormat(
  values: { audioFormat: unknown; sampleRateHz: unknown; channels: unknown },
  names: { audioFormat: string; sampleRateHz: string; channels: string },
): StreamFormat | string {
  const audioFormat = values.audioFormat;
  if (typeof audioFormat !== 'string' || (!isRawAudioFormat(audioFormat) && !isContainerAudioFormat(audioFormat))) {
    return `${names.audioFormat} must be one of ${AUDIO_FORMAT_NAMES}, got ${describe(audioFormat)}`;
  }
  const raw = isRawAudioFormat(audioFormat);
  const rateHz = values.sampleRateHz;
  if (rateHz !== undefined || raw) {
    if (typeof rateHz !== 'number' || !(STREAM_SAMPLE_RATES_HZ as readonly number[]).includes(rateHz)) {
      return `${names.sampleRateHz} must be one of ${STREAM_SAMPLE_RATES_HZ.join(', ')} Hz, got ${describe(rateHz)}`;
    }
  }
  const channels = values.channels;
  if (channels !== undefined || raw) {
    if (typeof channels !== 'number' || !Number.isInteger(channels) || channels < 1 || channels > STREAM_MAX_CHANNELS) {
      return `${names.channels} must be an integer from 1 to ${STREAM_MAX_CHANNELS}, got ${describe(channels)}`;
    }
  }
  // Container formats carry their own rate and channel count, so a value
  // given for them is checked above but not kept.
  return raw ? { audioFormat, sampleRateHz: rateHz as number, channels: channels as number } : { audioFormat };
}

function validateTriggers(value: unknown): FinalizationTrigger[] {
  if (value === undefined) {
    return [{ type: 'manual' }];
  }
  if (!Array.isArray(value) || value.length === 0) {
    throw invalid(`finalization_trigger must be a non-empty array of triggers, got ${describe(value)}`);
  }
  return value.map((entry, index): FinalizationTrigger => {
    const where = `finalization_trigger[${index}]`;
    if (!isPlainObject(entry)) {
      throw invalid(`${where} must be an object with a type, got ${describe(entry)}`);
    }
    switch (entry['type']) {
      case 'manual':
        return { type: 'manual' };
      case 'all_streams_ended':
        return { type: 'all_streams_ended' };
      case 'idle': {
        const idleSeconds = entry['idle_seconds'];
        if (typeof idleSeconds !== 'number' || !Number.isFinite(idleSeconds) || idleSeconds <= 0) {
          throw invalid(`${where}.idle_seconds must be a positive number of seconds, got ${describe(idleSeconds)}`);
        }
        return { type: 'idle', idle_seconds: idleSeconds };
      }
      default:
        throw invalid(`${where}.type must be "manual", "idle" or "all_streams_ended", got ${describe(entry['type'])}`);
    }
  });
}

function validateResultsDeliveries(value: unknown): string[] {
  if (value === undefined) {
    return [];
  }
  if (!Array.isArray(value)) {
    throw invalid(`results_deliveries must be an array of webhook deliveries, got ${describe(value)}`);
  }
  return value.map((entry, index) => {
    const where = `results_deliveries[${index}]`;
    if (!isPlainObject(entry) || entry['type'] !== 'webhook') {
      throw invalid(`${where} must be {"type": "webhook", "url": "..."}, got ${describe(entry)}`);
    }
    const url = entry['url'];
    let parsed: URL | undefined;
    try {
      parsed = typeof url === 'string' ? new URL(url) : undefined;
    } catch {
      parsed = undefined;
    }
    if (parsed === undefined || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
      throw invalid(`${where}.url must be an absolute http or https URL, got ${describe(url)}`);
    }
    return parsed.href;
  });
}

/** Validates the body of `PATCH /job/{id}`: the only change a client can make is to request finalization. */
export function validatePatchBody(body: unknown): void {
  if (!isPlainObject(body)) {
    throw invalid(`request body must be a JSON object, got ${describe(body)}`);
  }
  const extraKeys = Object.keys(body).filter((key) => key !== 'status');
  if (extraKeys.length > 0) {
    throw invalid(`only status can be changed, got ${extraKeys.map((key) => JSON.stringify(key)).join(', ')}`);
  }
  if (body['status'] !== FINALIZE_BODY.status) {
    throw invalid(`status must be ${JSON.stringify(FINALIZE_BODY.status)}, got ${describe(body['status'])}`);
  }
}

/** Returns an error message when `alias` breaks the alias pattern, undefined when it is valid. */
export function checkAlias(alias: string): string | undefined {
  return ALIAS_PATTERN.test(alias)
    ? undefined
    : `alias ${JSON.stringify(alias)} must be 1 to 64 characters of A-Z a-z 0-9 . _ -`;
}

const STREAM_QUERY_PARAMS = new Set(['audio_format', 'sample_rate', 'num_channels', API_KEY_QUERY_PARAM]);

/** Converts a decimal query value to a number; anything else stays a string so that the check rejects it. */
function queryNumber(value: string | null): number | string | undefined {
  if (value === null) {
    return undefined;
  }
  return /^[0-9]{1,9}$/.test(value) ? Number(value) : value;
}

/**
 * Validates the query of a stream upgrade. Returns the format, or a message
 * for the close reason when the query is invalid (unknown or repeated
 * parameters included).
 */
export function validateStreamQuery(params: URLSearchParams): StreamFormat | string {
  for (const name of new Set(params.keys())) {
    if (!STREAM_QUERY_PARAMS.has(name)) {
      return `unknown query parameter ${JSON.stringify(name)}; allowed: audio_format, sample_rate, num_channels, api_key`;
    }
    if (params.getAll(name).length > 1) {
      return `query parameter ${name} is given more than once`;
    }
  }
  return validateStreamFormat(
    {
      audioFormat: params.get('audio_format') ?? undefined,
      sampleRateHz: queryNumber(params.get('sample_rate')),
      channels: queryNumber(params.get('num_channels')),
    },
    { audioFormat: 'audio_format', sampleRateHz: 'sample_rate', channels: 'num_channels' },
  );
}

/** Describes a format the way the query writes it, for messages. */
export function describeStreamFormat(format: StreamFormat): string {
  return format.sampleRateHz === undefined
    ? `audio_format=${format.audioFormat}`
    : `audio_format=${format.audioFormat} sample_rate=${format.sampleRateHz} num_channels=${format.channels}`;
}

/** True when two formats name the same encoding, rate and channel count. */
export function sameStreamFormat(a: StreamFormat, b: StreamFormat): boolean {
  return a.audioFormat === b.audioFormat && a.sampleRateHz === b.sampleRateHz && a.channels === b.channels;
}

/**
 * State of one alias of a realtime job across all its connections: the
 * format fixed by the first connection, byte counts, the level meter that
 * turns audio into results, and the recording.
 */
import { RAW_AUDIO_FORMATS, isRawAudioFormat, type JobStreamInfo, type Result, type StreamState } from '../jobs/protocol.ts';
import type { Logger } from '../logger.ts';
import { AliasRecording, summaryFormatFields, type RecordingSummary } from './alias-recording.ts';
import { buildMeasuredResults, buildUnmeasuredResults } from './emulated-results.ts';
import { LevelMeter } from './level-meter.ts';
import { decodeRawAudio } from './raw-audio-decode.ts';
import type { StreamFormat } from './request-validation.ts';
import type { StreamConnection } from './stream-connection.ts';

export interface AliasStreamOptions {
  jobId: string;
  alias: string;
  format: StreamFormat;
  analyses: readonly string[];
  resultIntervalMs: number;
  recordDir?: string;
  retainAudio: boolean;
  log: Logger;
}

export class AliasStream {
  readonly jobId: string;
  readonly alias: string;
  readonly format: StreamFormat;
  state: StreamState = 'disconnected';
  receivedBytes = 0;
  connections = 0;
  endOfStream = false;
  /** The open connection, if any. At most one per alias. */
  connection: StreamConnection | undefined;
  readonly recording: AliasRecording;

  private readonly analyses: readonly string[];
  /** Present for raw formats; container audio is only counted. */
  private readonly meter: LevelMeter | undefined;
  /** Bytes of a container format received since its last results. */
  private unmeasuredBytes = 0;
  /** Bytes of one sample for all channels, for raw formats. */
  readonly frameBytes: number | undefined;

  constructor(options: AliasStreamOptions) {
    this.jobId = options.jobId;
    this.alias = options.alias;
    this.format = options.format;
    this.analyses = options.analyses;
    const { audioFormat, sampleRateHz, channels } = options.format;
    if (isRawAudioFormat(audioFormat) && sampleRateHz !== undefined && channels !== undefined) {
      this.frameBytes = RAW_AUDIO_FORMATS[audioFormat] * channels;
      this.meter = new LevelMeter({ sampleRateHz, channels, intervalMs: options.resultIntervalMs });
    }
    this.recording = new AliasRecording({
      jobId: options.jobId,
      alias: options.alias,
      retainAudio: options.retainAudio,
      log: options.log,
      ...(options.recordDir === undefined ? {} : { recordDir: options.recordDir }),
    });
  }

  /** Milliseconds of audio received; 0 for container formats, whose duration the emulator does not parse. */
  get receivedMs(): number {
    const { sampleRateHz } = this.format;
    if (this.frameBytes === undefined || sampleRateHz === undefined) {
      return 0;
    }
    return Math.floor((this.receivedBytes / this.frameBytes / sampleRateHz) * 1000);
  }

  /**
   * Records and measures one binary frame, already validated, and returns the
   * results of every interval it completes.
   */
  receive(data: Buffer): Result[] {
    this.receivedBytes += data.length;
    this.recording.append(data);
    if (this.meter === undefined || !isRawAudioFormat(this.format.audioFormat)) {
      this.unmeasuredBytes += data.length;
      return [];
    }
    const measurements = this.meter.push(decodeRawAudio(this.format.audioFormat, data));
    return measurements.flatMap((measurement) => buildMeasuredResults(this.alias, this.analyses, measurement));
  }

  /** Returns results for the audio not covered yet: the incomplete interval, or container bytes. */
  flush(): Result[] {
    if (this.meter !== undefined) {
      const measurement = this.meter.flush();
      return measurement === undefined ? [] : buildMeasuredResults(this.alias, this.analyses, measurement);
    }
    if (this.unmeasuredBytes === 0) {
      return [];
    }
    const results = buildUnmeasuredResults(this.alias, this.analyses, {
      audioFormat: this.format.audioFormat,
      receivedBytes: this.unmeasuredBytes,
    });
    this.unmeasuredBytes = 0;
    return results;
  }

  toJson(): JobStreamInfo {
    return { alias: this.alias, state: this.state, received_bytes: this.receivedBytes, received_ms: this.receivedMs };
  }

  /** Rewrites the recording's summary file with the current counts. */
  writeSummary(): void {
    this.recording.writeSummary(this.summary());
  }

  summary(): RecordingSummary {
    return {
      job_id: this.jobId,
      alias: this.alias,
      ...summaryFormatFields(this.format),
      received_bytes: this.receivedBytes,
      connections: this.connections,
      end_of_stream: this.endOfStream,
    };
  }
}

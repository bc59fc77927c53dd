/**
 * Record of what the benchmark sink received: per alias its format and
 * totals, and per binary WebSocket message the alias, the byte offset just
 * past its end, and the monotonic arrival time.
 *
 * Files: `PREFIX.json` (ArrivalSummary) and `PREFIX.arrivals` (per message
 * three float64 values: alias index, end offset in bytes, arrival ms).
 */
import { readFile, writeFile } from 'node:fs/promises';

export interface AliasArrivals {
  alias: string;
  audioFormat: string;
  sampleRateHz: number;
  channels: number;
  /** Bytes of one second of this alias's audio. */
  bytesPerSecond: number;
  receivedBytes: number;
  messages: number;
  connections: number;
  endOfStream: boolean;
}

export interface ArrivalSummary {
  aliases: AliasArrivals[];
  messages: number;
  jobsCreated: number;
}

export interface ArrivalRecords {
  aliasIndex: Float64Array;
  endOffset: Float64Array;
  arrivalMs: Float64Array;
}

export async function writeArrivalLog(prefix: string, summary: ArrivalSummary, interleaved: Float64Array): Promise<void> {
  await writeFile(`${prefix}.arrivals`, new Uint8Array(interleaved.buffer, interleaved.byteOffset, interleaved.byteLength));
  await writeFile(`${prefix}.json`, JSON.stringify(summary));
}

export async function readArrivalLog(prefix: string): Promise<{ summary: ArrivalSummary; records: ArrivalRecords }> {
  const summary = JSON.parse(await readFile(`${prefix}.json`, 'utf8')) as ArrivalSummary;
  const raw = await readFile(`${prefix}.arrivals`);
  const interleaved = new Float64Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  const count = Math.floor(interleaved.length / 3);
  const records: ArrivalRecords = {
    aliasIndex: new Float64Array(count),
    endOffset: new Float64Array(count),
    arrivalMs: new Float64Array(count),
  };
  for (let index = 0; index < count; index++) {
    records.aliasIndex[index] = interleaved[3 * index]!;
    records.endOffset[index] = interleaved[3 * index + 1]!;
    records.arrivalMs[index] = interleaved[3 * index + 2]!;
  }
  return { summary, records };
}

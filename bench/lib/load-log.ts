/**
 * Record of what the RTP load generator sent: the schedule of every stream
 * and the actual time of every tick. The latency analysis reads it back to
 * find when the packet carried at the end of each received frame was sent.
 *
 * Files: `PREFIX.json` (LoadSchedule) and `PREFIX.ticks` (per tick three
 * float64 values: start ms, end ms, packets sent).
 */
import { readFile, writeFile } from 'node:fs/promises';

/** Audio in one RTP packet, in ms: 160 PCMU samples at 8000 Hz. */
export const PACKET_MS = 20;
/** PCMU payload bytes of one packet. */
export const PACKET_PAYLOAD_BYTES = 160;

export interface LoadSchedule {
  /** Monotonic time (see monotonic-time.ts) at which slot 0 was due, in ms. */
  t0Ms: number;
  /**
   * Ticks per 20 ms slot. Stream s sends in phase `s % phases`, whose tick
   * is due at t0Ms + slot * 20 + phase * 20 / phases; in that tick it is
   * packet number `floor(s / phases)` of the batch.
   */
  phases: number;
  ssrcBase: number;
  /** Stream s has SSRC ssrcBase + s. */
  streams: number;
  /** Slot of each stream's first packet; packet i of stream s goes out in slot startSlots[s] + i. */
  startSlots: number[];
  /** Ticks recorded in the `.ticks` file. */
  ticks: number;
  packetsSent: number;
}

export interface TickTimes {
  startMs: Float64Array;
  endMs: Float64Array;
  packets: Float64Array;
}

export async function writeLoadLog(prefix: string, schedule: LoadSchedule, interleavedTicks: Float64Array): Promise<void> {
  await writeFile(`${prefix}.ticks`, new Uint8Array(interleavedTicks.buffer, interleavedTicks.byteOffset, interleavedTicks.byteLength));
  await writeFile(`${prefix}.json`, JSON.stringify(schedule));
}

export async function readLoadLog(prefix: string): Promise<{ schedule: LoadSchedule; ticks: TickTimes }> {
  const schedule = JSON.parse(await readFile(`${prefix}.json`, 'utf8')) as LoadSchedule;
  const raw = await readFile(`${prefix}.ticks`);
  const interleaved = new Float64Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  const count = Math.floor(interleaved.length / 3);
  const ticks: TickTimes = {
    startMs: new Float64Array(count),
    endMs: new Float64Array(count),
    packets: new Float64Array(count),
  };
  for (let tick = 0; tick < count; tick++) {
    ticks.startMs[tick] = interleaved[3 * tick]!;
    ticks.endMs[tick] = interleaved[3 * tick + 1]!;
    ticks.packets[tick] = interleaved[3 * tick + 2]!;
  }
  return { schedule, ticks };
}

/**
 * Estimated send time of packet `packetIndex` of stream `stream`, in
 * monotonic ms; undefined when the generator never sent it. Sends within a
 * tick are spread evenly between the tick's start and end.
 */
export function packetSendMs(schedule: LoadSchedule, ticks: TickTimes, stream: number, packetIndex: number): number | undefined {
  const startSlot = schedule.startSlots[stream];
  if (startSlot === undefined || packetIndex < 0) {
    return undefined;
  }
  const tick = (startSlot + packetIndex) * schedule.phases + (stream % schedule.phases);
  if (tick >= ticks.startMs.length) {
    return undefined;
  }
  const batchIndex = Math.floor(stream / schedule.phases);
  const batchSize = ticks.packets[tick]!;
  if (batchIndex >= batchSize) {
    return undefined;
  }
  const startMs = ticks.startMs[tick]!;
  return startMs + ((ticks.endMs[tick]! - startMs) * (batchIndex + 1)) / batchSize;
}

/**
 * Latency of received frames: for each binary message the sink recorded,
 * the time from the send of the RTP packet that carries the message's last
 * byte to the message's arrival.
 *
 * A message that ends at byte offset E of its alias carries audio up to
 * E / bytesPerSecond seconds of the stream, which PCMU packet number
 * ceil(E / bytesPerPacket) - 1 carried. Offsets map to packets this way
 * because the agent and the relay both start an alias with its first
 * packet, and the agent fills lost packets with audio of the same length.
 * The relay does not fill, so a datagram dropped before the relay shifts
 * the mapping; the runner reports the kernel's UDP drops beside it.
 */
import type { AliasArrivals, ArrivalRecords } from './arrival-log.ts';
import { PACKET_MS, packetSendMs, type LoadSchedule, type TickTimes } from './load-log.ts';
import { percentileOfSorted, round } from './statistics.ts';

export interface LatencyInput {
  schedule: LoadSchedule;
  ticks: TickTimes;
  aliases: AliasArrivals[];
  records: ArrivalRecords;
  aliasPrefix: string;
  /** Time the last stream started, in monotonic ms. */
  rampEndMs: number;
  /** Messages that arrived in [windowStartMs, windowEndMs) are counted, in monotonic ms. */
  windowStartMs: number;
  windowEndMs: number;
  /** A message is late when its latency exceeds its own duration plus this margin, in ms. */
  lateMarginMs: number;
  /** Audio per message the subject is configured for, to count the messages expected in the window, in ms. */
  frameMs: number;
}

export interface LatencySummary {
  /** Messages that arrived in the window and could be matched to a sent packet. */
  frames: number;
  /** Messages the window should hold: streams * window / frame duration. */
  expectedFrames: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  late: number;
  /** Messages whose alias or packet could not be matched to the generator's record. */
  unmatched: number;
  /**
   * Time from the start of the last stream to the arrival of the last late
   * message before the window, in ms; 0 when none was late. It shows how
   * long the subject took to catch up with streams that started together.
   */
  catchUpMs: number;
}

export function analyseLatency(input: LatencyInput): LatencySummary {
  const { records, aliases, schedule, ticks } = input;
  const previousEnd = new Float64Array(aliases.length);
  const streamOfAlias = aliases.map((alias) => streamIndexOf(alias.alias, input.aliasPrefix, schedule));
  const latencies: number[] = [];
  let late = 0;
  let unmatched = 0;
  let lastLateBeforeWindowMs: number | undefined;

  for (let index = 0; index < records.arrivalMs.length; index++) {
    const aliasIndex = records.aliasIndex[index]!;
    const endOffset = records.endOffset[index]!;
    const arrivalMs = records.arrivalMs[index]!;
    const startOffset = previousEnd[aliasIndex]!;
    previousEnd[aliasIndex] = endOffset;
    if (arrivalMs >= input.windowEndMs) {
      continue;
    }
    const inWindow = arrivalMs >= input.windowStartMs;
    const alias = aliases[aliasIndex];
    const stream = streamOfAlias[aliasIndex];
    const bytesPerPacket = alias === undefined ? 0 : (alias.bytesPerSecond * PACKET_MS) / 1000;
    const sendMs =
      alias === undefined || stream === undefined
        ? undefined
        : packetSendMs(schedule, ticks, stream, Math.ceil(endOffset / bytesPerPacket) - 1);
    if (alias === undefined || sendMs === undefined) {
      unmatched += inWindow ? 1 : 0;
      continue;
    }
    const latencyMs = arrivalMs - sendMs;
    const messageMs = ((endOffset - startOffset) / alias.bytesPerSecond) * 1000;
    const isLate = latencyMs > messageMs + input.lateMarginMs;
    if (!inWindow) {
      if (isLate) {
        lastLateBeforeWindowMs = arrivalMs;
      }
      continue;
    }
    latencies.push(latencyMs);
    if (isLate) {
      late += 1;
    }
  }

  const sorted = Float64Array.from(latencies).sort();
  const windowMs = input.windowEndMs - input.windowStartMs;
  return {
    frames: sorted.length,
    expectedFrames: Math.round((schedule.streams * windowMs) / input.frameMs),
    p50Ms: round(percentileOfSorted(sorted, 50)),
    p99Ms: round(percentileOfSorted(sorted, 99)),
    maxMs: round(percentileOfSorted(sorted, 100)),
    late,
    unmatched,
    catchUpMs: lastLateBeforeWindowMs === undefined ? 0 : Math.max(0, Math.round(lastLateBeforeWindowMs - input.rampEndMs)),
  };
}

/** Stream index of an alias `PREFIX<ssrc>`, or undefined when it names no stream of the schedule. */
function streamIndexOf(alias: string, prefix: string, schedule: LoadSchedule): number | undefined {
  if (!alias.startsWith(prefix)) {
    return undefined;
  }
  const ssrc = Number(alias.slice(prefix.length));
  const stream = ssrc - schedule.ssrcBase;
  return Number.isInteger(stream) && stream >= 0 && stream < schedule.streams ? stream : undefined;
}

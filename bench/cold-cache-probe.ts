/**
 * Measures how much slower the same small piece of per-stream work runs
 * right after the process slept than when it runs back to back. The work
 * imitates one packet: for each of N streams it updates an object, a
 * 160-byte array (a PCMU packet's payload) and a Map. It uses no sockets
 * and allocates nothing per stream, so the difference is the state of the
 * CPU's caches (and its branch predictors and TLBs) when the event loop
 * wakes up, not the agent's code.
 *
 *   taskset -c 1 node --import tsx bench/cold-cache-probe.ts --streams 100 --sleep-ms 20
 *
 * Prints the median over 300 passes each way, in ns per stream. A pass
 * after a sleep also pays a fixed cost (the timer's wake-up, the clock
 * reads), so the same pass without streams is timed too and subtracted
 * (`nsPerStreamAfterSleepNet`). A control pass of about 10 µs of
 * arithmetic over 4 KiB, in µs per pass, shows whether the CPU itself
 * runs slower after a sleep.
 */
import { emitEvent, numberOption, parseScriptOptions } from './lib/script-args.ts';

const options = parseScriptOptions('Usage: cold-cache-probe [--streams N] [--sleep-ms MS] [--passes N]', {
  streams: { type: 'string', default: '100', description: 'Objects of per-stream state touched per pass' },
  'sleep-ms': { type: 'string', default: '20', description: 'Sleep before each timed pass of the second series, in ms (20: one packet interval)' },
  passes: { type: 'string', default: '300', description: 'Timed passes per series' },
});
const streamCount = numberOption(options, 'streams', 1, 1_000_000);
const sleepMs = numberOption(options, 'sleep-ms', 1, 1000);
const passes = numberOption(options, 'passes', 10, 100_000);
/** Sum of every result, printed so that the work cannot be optimized away. */
let checksum = 0;

interface StreamState {
  packets: number;
  lastSequence: number;
  payload: Uint8Array;
  lookup: Map<number, number>;
}

// Visited in a shuffled order, because streams that start at different times end up spread over the heap.
const streams: StreamState[] = Array.from({ length: streamCount }, (_, index) => ({
  packets: 0,
  lastSequence: index,
  payload: new Uint8Array(160),
  lookup: new Map([[0, index]]),
}));
for (let index = streams.length - 1; index > 0; index--) {
  const other = Math.floor(Math.random() * (index + 1));
  [streams[index], streams[other]] = [streams[other]!, streams[index]!];
}

/** Does a pass without streams, whose time is the fixed cost of a timed pass. */
function touchNothing(): number {
  return 0;
}

function touchStreams(): number {
  let sum = 0;
  for (const stream of streams) {
    stream.packets += 1;
    stream.lastSequence = (stream.lastSequence + 1) & 0xffff;
    stream.payload[stream.packets % 160] = stream.lastSequence & 0xff;
    sum += stream.lookup.get(0)! + stream.payload[0]!;
  }
  return sum;
}

const control = new Float64Array(512).map((_, index) => index * 0.5);
function computeOnly(): number {
  let sum = 0;
  for (let round = 0; round < 25; round++) {
    for (let index = 0; index < control.length; index++) {
      sum += control[index]! * round;
    }
  }
  return sum;
}

/**
 * Returns the median of `passes` timings of `work` in ns, divided by `divisor`.
 * When `sleep` is set, each timed pass comes right after a sleep of `sleepMs`.
 */
async function medianTiming(work: () => number, divisor: number, sleep: boolean): Promise<number> {
  const timings: number[] = [];
  for (let pass = 0; pass < passes; pass++) {
    if (sleep) {
      await new Promise((resolve) => setTimeout(resolve, sleepMs));
    }
    const start = process.hrtime.bigint();
    checksum += work();
    timings.push(Number(process.hrtime.bigint() - start) / divisor);
  }
  timings.sort((a, b) => a - b);
  return timings[timings.length >> 1]!;
}

// Warm up, so that every series runs optimized code.
for (let pass = 0; pass < 500; pass++) {
  touchStreams();
  computeOnly();
}
const backToBackNs = await medianTiming(touchStreams, streamCount, false);
const afterSleepNs = await medianTiming(touchStreams, streamCount, true);
const emptyAfterSleepNs = await medianTiming(touchNothing, 1, true);
const computeBackToBackUs = await medianTiming(computeOnly, 1000, false);
const computeAfterSleepUs = await medianTiming(computeOnly, 1000, true);
const oneDecimal = (value: number): number => Math.round(value * 10) / 10;
emitEvent('cold_cache_probe', {
  streams: streamCount,
  sleepMs,
  passes,
  nsPerStreamBackToBack: oneDecimal(backToBackNs),
  nsPerStreamAfterSleep: oneDecimal(afterSleepNs),
  emptyPassNsAfterSleep: oneDecimal(emptyAfterSleepNs),
  nsPerStreamAfterSleepNet: oneDecimal(afterSleepNs - emptyAfterSleepNs / streamCount),
  computeOnlyUsBackToBack: oneDecimal(computeBackToBackUs),
  computeOnlyUsAfterSleep: oneDecimal(computeAfterSleepUs),
  checksum,
});

/**
 * Measures the time one Prometheus scrape of the agent's metrics takes on
 * the event loop, for a job with N RTP streams. The agent's AgentMetrics renders a
 * made-up snapshot of N open aliases and one RTP source with N SSRC
 * streams, as at N streams in the benchmark. Taking the snapshot from a
 * running agent is not included. A scrape runs in one piece, so audio
 * that arrives meanwhile waits for it.
 *
 *   node --import tsx bench/metrics-scrape-cost.ts --streams 1000
 *
 * Prints the median and the maximum of the scrapes in ms and the size of
 * the text, then the median without the RTP source's per-SSRC counters.
 */
import type { AgentSnapshot, AliasSnapshot } from '../src/service/agent-snapshot.ts';
import { AgentMetrics } from '../src/service/agent-metrics.ts';
import type { RtpStreamCounters } from '../src/sources/rtp/rtp-audio-source.ts';
import { emptySourceCounters } from '../src/sources/rtp/rtp-receiver.ts';
import { emitEvent, numberOption, parseScriptOptions } from './lib/script-args.ts';

const options = parseScriptOptions('Usage: metrics-scrape-cost [--streams N] [--scrapes N]', {
  streams: { type: 'string', default: '1000', description: 'Open aliases, each with its own RTP SSRC stream' },
  scrapes: { type: 'string', default: '20', description: 'Scrapes timed, after 5 to warm up' },
});
const streamCount = numberOption(options, 'streams', 1, 100_000);
const scrapes = numberOption(options, 'scrapes', 1, 10_000);

const aliases: AliasSnapshot[] = Array.from({ length: streamCount }, (_, index) => ({
  alias: `bench-${index}`,
  state: 'open',
  retrying: false,
  ready: true,
  outcome: 'running',
  sentBytes: 1_000_000 + index,
  sentSeconds: 125,
  sentFrames: 1250,
  resentBytes: 0,
  droppedBytes: 0,
  droppedFrames: 0,
  droppedSeconds: 0,
  lostBytes: 0,
  bufferedBytes: 0,
  bufferedSeconds: 0,
  reconnects: 0,
  results: 12,
  levelRmsDbfs: -23.5,
  levelPeakDbfs: -6.1,
}));
const rtpStreams: Array<RtpStreamCounters & { alias: string }> = Array.from({ length: streamCount }, (_, index) => ({
  alias: `bench-${index}`,
  ssrc: 100_000 + index,
  ssrcChanges: 0,
  malformed: 0,
  received: 6250,
  lost: 2,
  late: 0,
  duplicate: 0,
  reordered: 1,
  discontinuities: 0,
  outOfSequence: 0,
  undecodable: 0,
  nonAudio: 0,
  overflow: 0,
  filledFrames: 320,
}));
const snapshot: AgentSnapshot = {
  version: 'bench',
  pid: process.pid,
  phase: 'running',
  ready: true,
  startedAt: new Date().toISOString(),
  uptimeSeconds: 125,
  configFile: undefined,
  jobs: [
    {
      name: 'bench',
      jobId: 'bench-job',
      status: 'active',
      aliases,
      rtpSources: [
        {
          listen: '127.0.0.1:5004',
          stream: 'bench-{ssrc}',
          counters: {
            source: {
              ...emptySourceCounters(),
              datagrams: 6250 * streamCount,
              packets: 6250 * streamCount,
              streamsOpened: streamCount,
            },
            streams: rtpStreams,
          },
        },
      ],
    },
  ],
};

/**
 * Renders `scrapes` scrapes of `scraped` after 5 to warm up. Returns their
 * times in ms, sorted, and the size of the last text.
 */
async function timeScrapes(scraped: AgentSnapshot): Promise<{ timingsMs: number[]; textBytes: number }> {
  const metrics = new AgentMetrics(() => scraped);
  for (let warmUp = 0; warmUp < 5; warmUp++) {
    await metrics.render();
  }
  const timingsMs: number[] = [];
  let textBytes = 0;
  for (let scrape = 0; scrape < scrapes; scrape++) {
    const startMs = performance.now();
    textBytes = Buffer.byteLength(await metrics.render());
    timingsMs.push(performance.now() - startMs);
  }
  timingsMs.sort((a, b) => a - b);
  return { timingsMs, textBytes };
}

const oneDecimal = (value: number): number => Math.round(value * 10) / 10;
const full = await timeScrapes(snapshot);
// The same aliases without the RTP source's per-SSRC counters, whose metric has 9 series per stream.
const withoutRtp = await timeScrapes({ ...snapshot, jobs: [{ ...snapshot.jobs[0]!, rtpSources: [] }] });
emitEvent('metrics_scrape_cost', {
  streams: streamCount,
  scrapes,
  medianMs: oneDecimal(full.timingsMs[full.timingsMs.length >> 1]!),
  maxMs: oneDecimal(full.timingsMs[full.timingsMs.length - 1]!),
  textBytes: full.textBytes,
  withoutRtpCountersMedianMs: oneDecimal(withoutRtp.timingsMs[withoutRtp.timingsMs.length >> 1]!),
  withoutRtpCountersTextBytes: withoutRtp.textBytes,
});

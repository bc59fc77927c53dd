/**
 * One measurement: one subject at one stream count, between a fresh sink
 * and a fresh load generator, each in its own process.
 *
 *   sink up -> subject up (job created, RTP port bound) -> idle RSS
 *   -> generator starts, streams ramp up -> settle -> steady-state window
 *      (CPU from /proc/PID/stat deltas, RSS sampled, UDP drops)
 *   -> generator stops -> subject gets SIGTERM and shuts down gracefully
 *   -> sink writes its arrival record -> latency analysis of the window
 */
import { createSocket } from 'node:dgram';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

import { readArrivalLog } from './arrival-log.ts';
import { BenchChild } from './bench-child.ts';
import { analyseLatency, type LatencySummary } from './latency-analysis.ts';
import { readLoadLog } from './load-log.ts';
import { delay, delayUntil, monotonicMs } from './monotonic-time.ts';
import { readCpuSeconds, readCpuTimes, readMemory, readRunQueueWaitSeconds, readUdpDrops } from './proc-stats.ts';
import { linearSlope, median, round } from './statistics.ts';
import { ALIAS_PREFIX, subjectNodeArgs, type SubjectSpec } from './subjects.ts';

export interface MeasurementSettings {
  repoRoot: string;
  /** Folder of this measurement's logs, config and records. */
  runDir: string;
  payloadFile: string;
  windowSeconds: number;
  rampPerSecond: number;
  settleSeconds: number;
  phases: number;
  lateMarginMs: number;
  rssSampleMs: number;
  /** CPUs for the subject and for the load (generator and sink), in taskset syntax; unpinned when undefined. */
  pinning: { subject: string; load: string } | undefined;
  cpuProfile: boolean;
  /** More options for the subject's Node, such as --trace-gc. */
  subjectNodeOptions: string[];
}

export interface Measurement {
  subject: string;
  streams: number;
  run: number;
  /** Set when the measurement failed; the other fields then hold what was measured before. */
  error?: string;
  /** Measurements taken for this point; more than one when other processes took the subject's CPU. */
  attempts: number;
  windowSeconds: number;
  cpu: {
    /** CPU time of the subject over the window, in % of one core. */
    subjectPercent: number;
    /** Part of subjectPercent spent in the kernel (sockets, mostly), in % of one core. */
    subjectSystemPercent: number;
    /** CPU time of the subject while up and idle, before the first packet, in % of one core. */
    idlePercent: number;
    /** The same per stream: CPU microseconds per second of one stream. */
    subjectMicrosPerStreamSecond: number;
    generatorPercent: number;
    sinkPercent: number;
    /** Time the subject's main thread waited for a CPU held by another process, in % of the window. */
    subjectRunQueueWaitPercent: number;
    generatorRunQueueWaitPercent: number;
  };
  memory: {
    /** RSS once the subject is up and before any packet, in KiB. */
    idleRssKiB: number;
    /** Median RSS over the window, in KiB. */
    steadyRssKiB: number;
    peakRssKiB: number;
    /** (steady - idle) / streams, in KiB. */
    perStreamKiB: number;
    /** Least-squares slope of RSS over the second half of the window, in KiB per minute. */
    driftKiBPerMinute: number;
    /** [seconds since the window started, RSS in KiB]. */
    series: Array<[number, number]>;
  };
  latency: LatencySummary;
  load: {
    packetsSent: number;
    /** Ticks of the generator that started later than due: 99th percentile and maximum, in ms. */
    tickLagP99Ms: number;
    tickLagMaxMs: number;
    /** Datagrams the kernel dropped on the subject's RTP socket during the window. */
    udpDrops: number;
  };
  shutdown: { exitCode: number | null; signal: string | null; durationMs: number; timedOut: boolean };
}

const STARTUP_TIMEOUT_MS = 60_000;
/** Span of the idle CPU reading, in ms; /proc counts CPU time in 10 ms ticks. */
const IDLE_READING_MS = 2000;
const SUBJECT_STOP_TIMEOUT_MS = 180_000;
const HELPER_STOP_TIMEOUT_MS = 30_000;

export async function measure(spec: SubjectSpec, streams: number, run: number, settings: MeasurementSettings): Promise<Measurement> {
  const { runDir, repoRoot, pinning } = settings;
  await mkdir(runDir, { recursive: true });
  const result = emptyMeasurement(spec.name, streams, run, settings.windowSeconds);
  const children: BenchChild[] = [];
  const start = (name: string, nodeArgs: string[], cpuList: string | undefined): BenchChild => {
    const child = BenchChild.start({ name, nodeArgs, cwd: repoRoot, logFile: join(runDir, `${name}.log`), cpuList });
    children.push(child);
    return child;
  };

  try {
    const sink = start('sink', ['--import', 'tsx', 'bench/bench-sink.ts', '--port', '0', '--out', join(runDir, 'sink')], pinning?.load);
    const sinkPort = Number((await sink.waitForEvent('listening', STARTUP_TIMEOUT_MS))['port']);
    const udpPort = await findFreeUdpPort();
    const subjectArgs = await subjectNodeArgs(spec, {
      sinkPort,
      udpPort,
      streams,
      runDir,
      cpuProfileDir: settings.cpuProfile ? join(runDir, 'cpu-profile') : undefined,
      nodeOptions: settings.subjectNodeOptions,
    });
    const subject = start(spec.kind, subjectArgs, pinning?.subject);
    await sink.waitForEvent('job_created', STARTUP_TIMEOUT_MS);
    await waitForUdpSocket(udpPort, subject, STARTUP_TIMEOUT_MS);
    // Let startup work (module loading, JIT, the first GC) settle before the idle readings.
    await delay(1000);
    const idleCpuBefore = readCpuSeconds(subject.pid) ?? Number.NaN;
    await delay(IDLE_READING_MS);
    result.cpu.idlePercent = round((((readCpuSeconds(subject.pid) ?? Number.NaN) - idleCpuBefore) / IDLE_READING_MS) * 1000 * 100, 1);
    result.memory.idleRssKiB = readMemory(subject.pid)?.rssKiB ?? Number.NaN;

    const generator = start(
      'generator',
      [
        '--import',
        'tsx',
        'bench/rtp-load-generator.ts',
        '--target',
        `127.0.0.1:${udpPort}`,
        '--streams',
        String(streams),
        '--payload-file',
        settings.payloadFile,
        '--phases',
        String(settings.phases),
        '--ramp-per-second',
        String(settings.rampPerSecond),
        '--out',
        join(runDir, 'load'),
      ],
      pinning?.load,
    );
    const started = await generator.waitForEvent('started', STARTUP_TIMEOUT_MS);
    const t0Ms = Number(started['t0Ms']);
    const rampMs = Math.ceil((streams / settings.rampPerSecond) * 1000);
    const windowStartMs = t0Ms + rampMs + settings.settleSeconds * 1000;
    const windowEndMs = windowStartMs + settings.windowSeconds * 1000;

    await delayUntil(windowStartMs);
    const cpuBefore = readCpu([subject, generator, sink]);
    const waitBefore = [subject, generator].map((child) => readRunQueueWaitSeconds(child.pid) ?? Number.NaN);
    const systemBefore = readCpuTimes(subject.pid)?.systemSeconds ?? Number.NaN;
    const dropsBefore = readUdpDrops(udpPort) ?? 0;
    const samples: Array<[number, number]> = [];
    for (let nowMs = monotonicMs(); nowMs < windowEndMs; nowMs = monotonicMs()) {
      const memory = readMemory(subject.pid);
      if (memory === undefined) {
        throw new Error(`the ${spec.kind} exited during the measurement window; see ${spec.kind}.log`);
      }
      samples.push([round((nowMs - windowStartMs) / 1000, 1), memory.rssKiB]);
      await delay(Math.min(settings.rssSampleMs, windowEndMs - nowMs));
    }
    const cpuAfter = readCpu([subject, generator, sink]);
    const waitAfter = [subject, generator].map((child) => readRunQueueWaitSeconds(child.pid) ?? Number.NaN);
    const systemAfter = readCpuTimes(subject.pid)?.systemSeconds ?? Number.NaN;
    const actualWindowSeconds = (monotonicMs() - windowStartMs) / 1000;
    result.load.udpDrops = (readUdpDrops(udpPort) ?? dropsBefore) - dropsBefore;
    const [subjectCpu, generatorCpu, sinkCpu] = cpuAfter.map((after, index) => (after - cpuBefore[index]!) / actualWindowSeconds);
    result.cpu = {
      ...result.cpu,
      subjectPercent: round(subjectCpu! * 100, 1),
      subjectMicrosPerStreamSecond: round((subjectCpu! * 1e6) / streams, 1),
      subjectSystemPercent: round(((systemAfter - systemBefore) / actualWindowSeconds) * 100, 1),
      generatorPercent: round(generatorCpu! * 100, 1),
      sinkPercent: round(sinkCpu! * 100, 1),
      subjectRunQueueWaitPercent: round(((waitAfter[0]! - waitBefore[0]!) / actualWindowSeconds) * 100, 1),
      generatorRunQueueWaitPercent: round(((waitAfter[1]! - waitBefore[1]!) / actualWindowSeconds) * 100, 1),
    };
    result.memory.series = samples;
    result.memory.steadyRssKiB = median(samples.map(([, rssKiB]) => rssKiB));
    result.memory.peakRssKiB = readMemory(subject.pid)?.peakRssKiB ?? Number.NaN;
    result.memory.perStreamKiB = round((result.memory.steadyRssKiB - result.memory.idleRssKiB) / streams, 1);
    const secondHalf = samples.filter(([seconds]) => seconds >= settings.windowSeconds / 2);
    result.memory.driftKiBPerMinute = round(linearSlope(secondHalf.map(([seconds, rssKiB]) => ({ x: seconds / 60, y: rssKiB }))), 1);

    const generatorStopped = generator.waitForEvent('stopped', HELPER_STOP_TIMEOUT_MS);
    await generator.stop('SIGTERM', HELPER_STOP_TIMEOUT_MS);
    const stopped = await generatorStopped;
    result.load.packetsSent = Number(stopped['packetsSent']);
    result.load.tickLagP99Ms = round(Number(stopped['tickLagP99Ms']));
    result.load.tickLagMaxMs = round(Number(stopped['tickLagMaxMs']));

    const shutdownStartMs = monotonicMs();
    const exit = await subject.stop('SIGTERM', SUBJECT_STOP_TIMEOUT_MS);
    result.shutdown = {
      exitCode: exit.code,
      signal: exit.signal,
      durationMs: Math.round(monotonicMs() - shutdownStartMs),
      timedOut: exit.timedOut,
    };
    await sink.stop('SIGTERM', HELPER_STOP_TIMEOUT_MS);

    const load = await readLoadLog(join(runDir, 'load'));
    const arrivals = await readArrivalLog(join(runDir, 'sink'));
    result.latency = analyseLatency({
      schedule: load.schedule,
      ticks: load.ticks,
      aliases: arrivals.summary.aliases,
      records: arrivals.records,
      aliasPrefix: ALIAS_PREFIX,
      rampEndMs: t0Ms + rampMs,
      windowStartMs,
      windowEndMs,
      lateMarginMs: settings.lateMarginMs,
      frameMs: spec.frameMs,
    });
  } catch (error) {
    result.error = (error as Error).message;
  } finally {
    await Promise.all(children.filter((child) => child.running).map((child) => child.stop('SIGKILL', HELPER_STOP_TIMEOUT_MS)));
  }
  return result;
}

function readCpu(children: BenchChild[]): number[] {
  return children.map((child) => readCpuSeconds(child.pid) ?? Number.NaN);
}

/** Waits until a UDP socket is bound to `port`, the sign that the subject receives RTP. */
async function waitForUdpSocket(port: number, subject: BenchChild, timeoutMs: number): Promise<void> {
  const deadlineMs = monotonicMs() + timeoutMs;
  while (readUdpDrops(port) === undefined) {
    if (!subject.running) {
      throw new Error(`the ${subject.name} exited before binding UDP port ${port}; see ${subject.name}.log`);
    }
    if (monotonicMs() > deadlineMs) {
      throw new Error(`the ${subject.name} did not bind UDP port ${port} within ${timeoutMs} ms; see ${subject.name}.log`);
    }
    await delay(50);
  }
}

async function findFreeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(resolve));
  return port;
}

function emptyMeasurement(subject: string, streams: number, run: number, windowSeconds: number): Measurement {
  return {
    subject,
    streams,
    run,
    attempts: 1,
    windowSeconds,
    cpu: {
      subjectPercent: Number.NaN,
      subjectSystemPercent: Number.NaN,
      idlePercent: Number.NaN,
      subjectMicrosPerStreamSecond: Number.NaN,
      generatorPercent: Number.NaN,
      sinkPercent: Number.NaN,
      subjectRunQueueWaitPercent: Number.NaN,
      generatorRunQueueWaitPercent: Number.NaN,
    },
    memory: {
      idleRssKiB: Number.NaN,
      steadyRssKiB: Number.NaN,
      peakRssKiB: Number.NaN,
      perStreamKiB: Number.NaN,
      driftKiBPerMinute: Number.NaN,
      series: [],
    },
    latency: {
      frames: 0,
      expectedFrames: 0,
      p50Ms: Number.NaN,
      p99Ms: Number.NaN,
      maxMs: Number.NaN,
      late: 0,
      unmatched: 0,
      catchUpMs: 0,
    },
    load: { packetsSent: 0, tickLagP99Ms: Number.NaN, tickLagMaxMs: Number.NaN, udpDrops: 0 },
    shutdown: { exitCode: null, signal: null, durationMs: Number.NaN, timedOut: false },
  };
}

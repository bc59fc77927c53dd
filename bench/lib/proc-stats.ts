/**
 * Readings of Linux /proc for the benchmark: CPU time and memory of a
 * process, drops of a UDP socket, and a description of the machine.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism, release, totalmem } from 'node:os';

/** Kernel clock ticks per second, the unit of utime and stime in /proc/PID/stat. */
export const CLOCK_TICKS_PER_SECOND = readClockTicksPerSecond();

function readClockTicksPerSecond(): number {
  try {
    const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isInteger(ticks) && ticks > 0 ? ticks : 100;
  } catch {
    // USER_HZ is 100 on every mainstream Linux architecture.
    return 100;
  }
}

/** User plus system CPU time of a process so far, in seconds (threads included); undefined once it has exited. */
export function readCpuSeconds(pid: number): number | undefined {
  const times = readCpuTimes(pid);
  return times === undefined ? undefined : times.userSeconds + times.systemSeconds;
}

/** CPU time of a process so far in user and in kernel mode, in seconds (threads included); undefined once it has exited. */
export function readCpuTimes(pid: number): { userSeconds: number; systemSeconds: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) is in parentheses and may contain spaces, so
  // fields are counted from the last ')'; utime and stime are fields 14 and 15.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { userSeconds: Number(fields[11]) / CLOCK_TICKS_PER_SECOND, systemSeconds: Number(fields[12]) / CLOCK_TICKS_PER_SECOND };
}

/**
 * Time the main thread of a process has waited for a CPU while runnable, in
 * seconds (the second field of /proc/PID/schedstat). It grows when other
 * processes compete for the CPU, which is the noise of a shared machine.
 */
export function readRunQueueWaitSeconds(pid: number): number | undefined {
  try {
    const fields = readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(' ');
    return Number(fields[1]) / 1e9;
  } catch {
    return undefined;
  }
}

export interface MemoryReading {
  /** Resident set size now, in KiB (VmRSS). */
  rssKiB: number;
  /** Peak resident set size so far, in KiB (VmHWM). */
  peakRssKiB: number;
}

/** Resident memory of a process; undefined once it has exited. */
export function readMemory(pid: number): MemoryReading | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const rss = /^VmRSS:\s+(\d+) kB/m.exec(text);
  const peak = /^VmHWM:\s+(\d+) kB/m.exec(text);
  if (rss === null || peak === null) {
    return undefined;
  }
  return { rssKiB: Number(rss[1]), peakRssKiB: Number(peak[1]) };
}

/**
 * Datagrams the kernel dropped on the UDP sockets bound to `port` (the
 * `drops` column of /proc/net/udp and udp6), mostly because the receive
 * buffer was full. Undefined when no such socket exists.
 */
export function readUdpDrops(port: number): number | undefined {
  const portHex = port.toString(16).toUpperCase().padStart(4, '0');
  let found = false;
  let drops = 0;
  for (const table of ['/proc/net/udp', '/proc/net/udp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const columns = line.trim().split(/\s+/);
      const localAddress = columns[1];
      if (localAddress === undefined || !localAddress.endsWith(`:${portHex}`)) {
        continue;
      }
      found = true;
      drops += Number(columns[columns.length - 1] ?? 0);
    }
  }
  return found ? drops : undefined;
}

export interface MachineInfo {
  cpuModel: string;
  /** Logical CPUs this process may run on. */
  cpus: number;
  memoryGiB: number;
  nodeVersion: string;
  kernel: string;
  /** Load average over the last minute when the benchmark started. */
  loadAverage1m: number;
}

export function describeMachine(): MachineInfo {
  let cpuModel = 'unknown';
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    cpuModel = match?.[1]?.trim() ?? cpuModel;
  } catch {
    // Not Linux, or /proc is not mounted; the model stays unknown.
  }
  let loadAverage1m = Number.NaN;
  try {
    loadAverage1m = Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  } catch {
    // Same as above.
  }
  return {
    cpuModel,
    cpus: availableParallelism(),
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    nodeVersion: process.version,
    kernel: release(),
    loadAverage1m,
  };
}

/**
 * Prints where a V8 CPU profile (`node --cpu-prof`, or `--cpu-profile` of
 * run-bench) spent its time: self time per function and per source file,
 * largest first, in % of the samples. `--skip-seconds S` leaves out the
 * first S seconds, so that startup does not hide the steady state.
 *
 *   node --import tsx bench/summarize-cpu-profile.ts FILE.cpuprofile [--top 40] [--skip-seconds 10]
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  /** Microseconds between consecutive samples, the first one from startTime. */
  timeDeltas: number[];
}

const USAGE = 'Usage: summarize-cpu-profile FILE.cpuprofile [--top N] [--skip-seconds S]\n';
const [file, ...rest] = process.argv.slice(2);
if (file === '--help' || file === '-h') {
  process.stdout.write(USAGE);
  process.exit(0);
}
if (file === undefined || file.startsWith('--')) {
  process.stderr.write(USAGE);
  process.exit(64);
}
const topIndex = rest.indexOf('--top');
const top = topIndex === -1 ? 40 : Number(rest[topIndex + 1]);
const skipIndex = rest.indexOf('--skip-seconds');
const skipMicros = skipIndex === -1 ? 0 : Number(rest[skipIndex + 1]) * 1e6;
const repoRoot = fileURLToPath(new URL('..', import.meta.url));

const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
const hitsById = new Map<number, number>();
let elapsedMicros = 0;
let totalSamples = 0;
profile.samples.forEach((id, index) => {
  elapsedMicros += profile.timeDeltas[index] ?? 0;
  if (elapsedMicros < skipMicros) {
    return;
  }
  hitsById.set(id, (hitsById.get(id) ?? 0) + 1);
  totalSamples += 1;
});
if (totalSamples === 0) {
  process.stderr.write(
    `${file} has no samples after the first ${skipMicros / 1e6} s: the profile covers ${(elapsedMicros / 1e6).toFixed(1)} s; use a smaller --skip-seconds\n`,
  );
  process.exit(65);
}
const byFunction = new Map<string, number>();
const byFile = new Map<string, number>();
for (const node of profile.nodes) {
  const hits = hitsById.get(node.id) ?? 0;
  if (hits === 0) {
    continue;
  }
  const location = shortenUrl(node.callFrame.url);
  const functionKey = `${node.callFrame.functionName || '(anonymous)'}  ${location}${location === '' ? '' : `:${node.callFrame.lineNumber + 1}`}`;
  byFunction.set(functionKey, (byFunction.get(functionKey) ?? 0) + hits);
  const fileKey = location === '' ? `(${node.callFrame.functionName || 'native'})` : location;
  byFile.set(fileKey, (byFile.get(fileKey) ?? 0) + hits);
}

const durationSeconds = (profile.endTime - profile.startTime - skipMicros) / 1e6;
process.stdout.write(`${file}: ${totalSamples} samples over ${durationSeconds.toFixed(1)} s\n\nSelf time by function:\n`);
printTable(byFunction);
process.stdout.write('\nSelf time by file:\n');
printTable(byFile);

function printTable(table: Map<string, number>): void {
  const rows = [...table.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  for (const [key, hits] of rows) {
    process.stdout.write(`${((hits / totalSamples) * 100).toFixed(1).padStart(6)} %  ${key}\n`);
  }
}

function shortenUrl(url: string): string {
  if (url.startsWith('file://')) {
    const path = fileURLToPath(url);
    return path.startsWith(repoRoot) ? relative(repoRoot, path) : path;
  }
  return url;
}

/**
 * Groups the samples of a perf profile of the agent by where the code comes
 * from: the resampler's WebAssembly, the agent's own modules, Node's
 * JavaScript, ws, libc, the kernel, garbage collection and the rest of V8
 * and Node. Prints one Markdown row per group, in % of all samples, counted
 * from perf's sample counts, and the number of samples.
 *
 *   node --import tsx bench/summarize-perf.ts OUT_DIR/perf.data
 *
 * It runs `perf report` (Debian package `linux-perf`) on the file, so the
 * JIT symbol map that `--perf-basic-prof` wrote must still be in /tmp.
 */
import { execFileSync } from 'node:child_process';

const usage = 'usage: node --import tsx bench/summarize-perf.ts PERF_DATA';

interface Group {
  label: string;
  matches: (dso: string, symbol: string) => boolean;
}

/** Groups in the order they are tried; the first match takes the sample. */
const GROUPS: Group[] = [
  { label: "speexdsp's resampler (WebAssembly)", matches: (_dso, symbol) => symbol.includes('wasm-function') },
  { label: 'resampler JavaScript (`src/audio/resampler.ts`)', matches: (_dso, symbol) => symbol.includes('/src/audio/resampler.ts') },
  {
    label: 'RTP path in JavaScript (`src/sources/`: receiver, jitter buffer, decoder, timeline, source, and the code V8 inlined into them)',
    matches: (_dso, symbol) => symbol.includes('/src/sources/'),
  },
  {
    label: 'the rest of `src/`: conversion, framing, live path, connection, resend window, where V8 did not inline them',
    matches: (_dso, symbol) => symbol.includes('/src/'),
  },
  { label: '`ws` and `bufferutil`', matches: (dso, symbol) => symbol.includes('node_modules/ws/') || dso.includes('bufferutil') },
  { label: "Node's own JavaScript (`node:` modules)", matches: (_dso, symbol) => symbol.includes(' node:') },
  {
    label: 'garbage collection',
    matches: (_dso, symbol) =>
      /v8::internal::(Scavenger|ScavengerCollector|MarkCompact|ConcurrentMarking|MinorMarkCompact|Sweeper|Heap::|MemoryAllocator|MarkingVisitor|MainMarkingVisitor|ConcurrentMarkingVisitor|IncrementalMarking)/.test(
        symbol,
      ),
  },
  { label: 'kernel: UDP receive, TCP send on loopback, system calls', matches: (dso) => dso.startsWith('[kernel') },
  { label: 'libc: `malloc` and `free`, `recvmsg`, `memcpy`', matches: (dso) => dso.startsWith('libc') },
  { label: 'V8 and Node native code: builtins, inline caches, calls between JavaScript and C++', matches: () => true },
];

const file = process.argv[2];
if (file === undefined) {
  process.stderr.write(`${usage}\n`);
  process.exit(64);
}

const report = execFileSync('perf', ['report', '-i', file, '--no-children', '--sort', 'dso,sym', '-g', 'none', '-n', '-t', '|'], {
  encoding: 'utf8',
  maxBuffer: 256 * 1024 * 1024,
  stdio: ['ignore', 'pipe', 'ignore'],
});

const totals = new Map<string, number>(GROUPS.map((group) => [group.label, 0]));
let all = 0;
for (const line of report.split('\n')) {
  if (line.startsWith('#') || line.trim() === '') {
    continue;
  }
  // Fields: overhead, samples, dso, symbol.
  const [, samplesText, dsoText, symbolText] = line.split('|');
  if (samplesText === undefined || dsoText === undefined || symbolText === undefined) {
    continue;
  }
  const samples = Number.parseInt(samplesText, 10);
  if (!Number.isFinite(samples)) {
    continue;
  }
  const dso = dsoText.trim();
  const symbol = symbolText.trim();
  const group = GROUPS.find((candidate) => candidate.matches(dso, symbol))!;
  totals.set(group.label, totals.get(group.label)! + samples);
  all += samples;
}
if (all === 0) {
  process.stderr.write(`no samples in ${file}; check that perf can read it\n`);
  process.exit(1);
}

process.stdout.write('| part | % of samples |\n|---|---:|\n');
for (const group of GROUPS) {
  process.stdout.write(`| ${group.label} | ${((100 * totals.get(group.label)!) / all).toFixed(1)} |\n`);
}
process.stdout.write(`\n${all} samples in ${file}\n`);

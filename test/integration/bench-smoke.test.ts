/**
 * Runs the whole benchmark harness (load generator, bare relay, agent,
 * sink, analysis) at 5 streams for a few seconds and checks that it
 * produces a well-formed report. Timings are not asserted: they depend on
 * the machine.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';

import type { BenchReport } from '../../bench/lib/bench-report.ts';
import { makeTempDir, REPO_ROOT, withTimeout } from '../helpers/tools.ts';

const SUBJECTS = ['relay', 'agent'];
const STREAMS = 5;

test('bench harness writes a complete report', { timeout: 240_000 }, async () => {
  const outDir = await makeTempDir('modulate-agent-bench-');
  try {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'bench/run-bench.ts',
        '--streams',
        String(STREAMS),
        '--seconds',
        '3',
        '--runs',
        '1',
        '--subjects',
        SUBJECTS.join(','),
        '--settle-seconds',
        '1',
        '--rss-sample-ms',
        '500',
        '--out',
        outDir,
      ],
      { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (data: Buffer) => {
      stderr += data.toString();
    });
    const [code] = (await withTimeout(once(child, 'exit'), 200_000, 'the benchmark to finish')) as [number | null];
    assert.equal(code, 0, `run-bench failed:\n${stderr}`);

    const report = JSON.parse(await readFile(join(outDir, 'report.json'), 'utf8')) as BenchReport;
    assert.equal(typeof report.machine.cpuModel, 'string');
    assert.ok(report.machine.cpus >= 1);
    assert.equal(typeof report.finishedAt, 'string');
    assert.deepEqual(report.settings.subjects, SUBJECTS);
    assert.equal(report.measurements.length, SUBJECTS.length);

    for (const measurement of report.measurements) {
      const label = `${measurement.subject} measurement`;
      assert.equal(measurement.error, undefined, `${label} failed: ${measurement.error}`);
      assert.equal(measurement.streams, STREAMS, label);
      assert.equal(measurement.shutdown.exitCode, 0, `${label} exit code`);
      assert.ok(Number.isFinite(measurement.cpu.subjectPercent), `${label} has a CPU reading`);
      assert.ok(Number.isFinite(measurement.cpu.generatorPercent), `${label} has a generator CPU reading`);
      assert.ok(measurement.memory.idleRssKiB > 0, `${label} has an idle RSS`);
      assert.ok(measurement.memory.steadyRssKiB > 0, `${label} has a steady RSS`);
      assert.ok(measurement.memory.series.length > 0, `${label} has RSS samples`);
      assert.ok(measurement.load.packetsSent > 0, `${label} sent packets`);
      assert.ok(measurement.latency.expectedFrames > 0, `${label} expects frames`);
      assert.ok(measurement.latency.frames > 0, `${label} received frames in the window`);
      assert.equal(measurement.latency.unmatched, 0, `${label} matched every frame to a packet`);
      assert.ok(Number.isFinite(measurement.latency.p99Ms), `${label} has a p99 latency`);
    }

    const agentRow = report.summary.find((row) => row.subject === 'agent');
    assert.ok(agentRow !== undefined, 'summary has an agent row');
    assert.equal(agentRow.runs, 1);
    assert.equal(typeof agentRow.cpuRatio, 'number', 'agent row has a CPU ratio to the relay');
    assert.equal(typeof agentRow.perStreamRssRatio, 'number', 'agent row has an RSS ratio to the relay');
    assert.deepEqual(agentRow.problems, []);

    const markdown = await readFile(join(outDir, 'report.md'), 'utf8');
    for (const heading of ['## CPU', '## Memory', '## Latency', '## Load health']) {
      assert.ok(markdown.includes(heading), `report.md has the section ${heading}`);
    }
    assert.match(markdown, /\| agent \| 5 \| 1 \|/);
  } finally {
    await rm(outDir, { recursive: true, force: true });
  }
});

/**
 * Runs the benchmark's measuring scripts at tiny sizes and checks what
 * they report and how they reject invalid options. Timings are not
 * asserted: they depend on the machine.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { execFileAsync, REPO_ROOT } from '../helpers/tools.ts';

/** Runs a script of bench/ with tsx and returns the one JSON event it prints. */
async function runScript(script: string, args: string[]): Promise<Record<string, unknown>> {
  const { stdout } = await execFileAsync(process.execPath, ['--import', 'tsx', `bench/${script}`, ...args], {
    cwd: REPO_ROOT,
    timeout: 60_000,
  });
  return JSON.parse(stdout.trim()) as Record<string, unknown>;
}

test('pipeline-cost paced delivers every frame', { timeout: 90_000 }, async () => {
  // 2 streams of 0.2 s of mu-law at 8 kHz are 1600 bytes each: two 100 ms frames of 800 bytes per stream.
  const event = await runScript('pipeline-cost.ts', ['--streams', '2', '--seconds', '0.2', '--format', 'mulaw', '--round-ms', '1']);

  assert.equal(event['event'], 'pipeline_cost');
  assert.equal(event['roundMs'], 1);
  assert.equal(event['frames'], 4);
  assert.ok(Number(event['cpuMicrosPerStreamSecond']) > 0);
});

test('pipeline-cost rejects round-ms below 1', { timeout: 60_000 }, async () => {
  await assert.rejects(
    runScript('pipeline-cost.ts', ['--streams', '1', '--seconds', '0.2', '--round-ms', '0.5']),
    (error: { code?: number; stderr?: string }) => {
      assert.equal(error.code, 64);
      assert.match(error.stderr ?? '', /invalid --round-ms 0\.5; use 0 or a number from 1 to 1000/);
      return true;
    },
  );
});

test('cold-cache probe reports every series', { timeout: 60_000 }, async () => {
  const event = await runScript('cold-cache-probe.ts', ['--streams', '10', '--passes', '10', '--sleep-ms', '1']);

  assert.equal(event['event'], 'cold_cache_probe');
  assert.equal(event['streams'], 10);
  for (const field of [
    'nsPerStreamBackToBack',
    'nsPerStreamAfterSleep',
    'emptyPassNsAfterSleep',
    'computeOnlyUsBackToBack',
    'computeOnlyUsAfterSleep',
  ]) {
    assert.ok(Number(event[field]) > 0, `${field} is ${String(event[field])}`);
  }
  assert.ok(Number.isFinite(Number(event['nsPerStreamAfterSleepNet'])));
  assert.equal(typeof event['checksum'], 'number');
});

test('metrics scrape cost reports both variants', { timeout: 60_000 }, async () => {
  const event = await runScript('metrics-scrape-cost.ts', ['--streams', '10', '--scrapes', '2']);

  assert.equal(event['event'], 'metrics_scrape_cost');
  assert.ok(Number(event['medianMs']) > 0);
  assert.ok(Number(event['maxMs']) >= Number(event['medianMs']));
  assert.ok(Number(event['withoutRtpCountersMedianMs']) > 0);
  // The per-SSRC counters add 9 series per stream to the text.
  assert.ok(Number(event['textBytes']) > Number(event['withoutRtpCountersTextBytes']));
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import type { AliasSummary } from '../../src/jobs/alias-stream.ts';
import { aggregateStreamStats } from '../../src/service/job-fleet.ts';

function summary(alias: string, fields: Partial<AliasSummary> = {}): AliasSummary {
  return {
    alias,
    secondsSent: 10.02,
    frames: 100,
    bytes: 320_640,
    droppedMs: 0,
    lostBytes: 0,
    reconnects: 0,
    results: 1,
    outcome: 'running',
    doneReceived: false,
    ...fields,
  };
}

describe('aggregateStreamStats', () => {
  test('sums counters over aliases', () => {
    const aliases = Array.from({ length: 30 }, (_, index) => summary(`rtp-${index}`));
    const stats = aggregateStreamStats(aliases);
    assert.equal(stats['aliases'], 30);
    assert.equal(stats['secondsSent'], 300.6);
    assert.equal(stats['frames'], 3000);
    assert.equal(stats['bytes'], 30 * 320_640);
    assert.equal(stats['aliasesLosingAudio'], 0);
    assert.deepEqual(stats['aliasesLosingAudioFirst'], []);
  });

  test('names aliases that lost audio', () => {
    const aliases = Array.from({ length: 30 }, (_, index) =>
      summary(`rtp-${index}`, index % 2 === 0 ? { droppedMs: 20, reconnects: 1 } : index === 1 ? { lostBytes: 640 } : {}),
    );
    const stats = aggregateStreamStats(aliases);
    assert.equal(stats['droppedMs'], 15 * 20);
    assert.equal(stats['lostBytes'], 640);
    assert.equal(stats['reconnects'], 15);
    assert.equal(stats['aliasesLosingAudio'], 16);
    assert.deepEqual(stats['aliasesLosingAudioFirst'], ['rtp-0', 'rtp-1', 'rtp-2', 'rtp-4', 'rtp-6', 'rtp-8', 'rtp-10', 'rtp-12', 'rtp-14', 'rtp-16']);
  });
});

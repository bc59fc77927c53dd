import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { fullJitterDelayMs } from '../../src/transport/backoff.ts';

describe('fullJitterDelayMs', () => {
  it('doubles the ceiling per failure', () => {
    const top = (): number => 1;
    assert.equal(fullJitterDelayMs(0, 250, 10_000, top), 250);
    assert.equal(fullJitterDelayMs(1, 250, 10_000, top), 500);
    assert.equal(fullJitterDelayMs(3, 250, 10_000, top), 2000);
  });

  it('caps the ceiling at the maximum', () => {
    assert.equal(fullJitterDelayMs(10, 250, 10_000, () => 1), 10_000);
    assert.equal(fullJitterDelayMs(1000, 250, 10_000, () => 1), 10_000);
  });

  it('spreads delays from zero to the ceiling', () => {
    assert.equal(fullJitterDelayMs(3, 250, 10_000, () => 0), 0);
    assert.equal(fullJitterDelayMs(3, 250, 10_000, () => 0.5), 1000);
    for (let index = 0; index < 1000; index += 1) {
      const delayMs = fullJitterDelayMs(4, 250, 10_000);
      assert.ok(delayMs >= 0, `delay ${delayMs} is negative`);
      assert.ok(delayMs <= 4000, `delay ${delayMs} is over the 4000 ms ceiling`);
    }
  });
});

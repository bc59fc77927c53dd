import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { SILENCE_DBFS, measureFrameLevel } from '../../src/audio/frame-level.ts';
import { linearToAlaw, linearToMulaw } from '../../src/audio/g711.ts';

/** A full-scale 1 kHz sine at 16 kHz, 16 whole periods. */
function sineS16le(peak: number): Buffer {
  const samples = 256;
  const buffer = Buffer.alloc(samples * 2);
  for (let index = 0; index < samples; index += 1) {
    buffer.writeInt16LE(Math.round(peak * Math.sin((2 * Math.PI * index) / 16)), index * 2);
  }
  return buffer;
}

describe('frame level', () => {
  it('full-scale sine is -3.01 dBFS RMS', () => {
    const level = measureFrameLevel(sineS16le(32767), 's16le');

    // RMS of a sine is its peak divided by sqrt(2): 20 log10(1/sqrt(2)) = -3.0103 dB.
    assert.ok(Math.abs(level.rmsDbfs + 3.0103) < 0.01, `RMS ${level.rmsDbfs}`);
    assert.ok(Math.abs(level.peakDbfs) < 0.01, `peak ${level.peakDbfs}`);
  });

  it('-20 dBFS square wave', () => {
    const amplitude = Math.round(32768 * 0.1);
    const buffer = Buffer.alloc(320);
    for (let index = 0; index < 160; index += 1) {
      buffer.writeInt16LE(index % 2 === 0 ? amplitude : -amplitude, index * 2);
    }
    const level = measureFrameLevel(buffer, 's16le');

    assert.ok(Math.abs(level.rmsDbfs + 20) < 0.01, `RMS ${level.rmsDbfs}`);
    assert.ok(Math.abs(level.peakDbfs + 20) < 0.01, `peak ${level.peakDbfs}`);
  });

  it('silence and empty frames', () => {
    assert.deepEqual(measureFrameLevel(Buffer.alloc(320), 's16le'), { rmsDbfs: SILENCE_DBFS, peakDbfs: SILENCE_DBFS });
    assert.deepEqual(measureFrameLevel(Buffer.alloc(0), 'mulaw'), { rmsDbfs: SILENCE_DBFS, peakDbfs: SILENCE_DBFS });
  });

  it('G.711 codes decode before measuring', () => {
    // Largest G.711 magnitudes: mu-law 32124 and A-law 32256 (ITU-T G.711 tables).
    const mulaw = Buffer.from([linearToMulaw(32767), linearToMulaw(-32768)]);
    const alaw = Buffer.from([linearToAlaw(32767), linearToAlaw(-32768)]);

    assert.ok(Math.abs(measureFrameLevel(mulaw, 'mulaw').peakDbfs - 20 * Math.log10(32124 / 32768)) < 0.01);
    assert.ok(Math.abs(measureFrameLevel(alaw, 'alaw').peakDbfs - 20 * Math.log10(32256 / 32768)) < 0.01);
  });
});

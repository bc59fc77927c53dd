/**
 * Level of one encoded frame, for the per-alias level meter. dBFS is
 * relative to a full-scale square wave (AES17), so a full-scale sine
 * measures -3.01 dBFS RMS and 0 dBFS peak.
 */
import type { PcmEncoding } from './format.ts';
import { ALAW_DECODE_TABLE, MULAW_DECODE_TABLE } from './g711.ts';

/** Level reported for digital silence, where the logarithm has no finite value. */
export const SILENCE_DBFS = -120;

export interface FrameLevel {
  rmsDbfs: number;
  peakDbfs: number;
}

function toDbfs(linear: number): number {
  if (linear <= 0) {
    return SILENCE_DBFS;
  }
  return Math.max(SILENCE_DBFS, 20 * Math.log10(linear));
}

/** Measures RMS and peak of every sample of every channel in `data`; an empty frame measures as silence. */
export function measureFrameLevel(data: Buffer, encoding: PcmEncoding): FrameLevel {
  let sumSquares = 0;
  let peak = 0;
  let count = 0;
  // Plain indexed loops without a call per sample, because this runs on
  // every frame of every alias and so adds to the cost of each stream.
  switch (encoding) {
    case 's16le':
      count = data.length >> 1;
      for (let offset = 0; offset + 1 < data.length; offset += 2) {
        // Little-endian 16-bit sample, sign-extended by the shifts.
        const sample = ((data[offset]! | (data[offset + 1]! << 8)) << 16) >> 16;
        sumSquares += sample * sample;
        const magnitude = sample < 0 ? -sample : sample;
        if (magnitude > peak) {
          peak = magnitude;
        }
      }
      break;
    case 'mulaw':
    case 'alaw': {
      const table = encoding === 'mulaw' ? MULAW_DECODE_TABLE : ALAW_DECODE_TABLE;
      count = data.length;
      for (let index = 0; index < data.length; index++) {
        const sample = table[data[index]!]!;
        sumSquares += sample * sample;
        const magnitude = sample < 0 ? -sample : sample;
        if (magnitude > peak) {
          peak = magnitude;
        }
      }
      break;
    }
  }
  if (count === 0) {
    return { rmsDbfs: SILENCE_DBFS, peakDbfs: SILENCE_DBFS };
  }
  // 32768 is full scale of 16-bit PCM; the G.711 tables decode to the same 16-bit range.
  return { rmsDbfs: toDbfs(Math.sqrt(sumSquares / count) / 32768), peakDbfs: toDbfs(peak / 32768) };
}

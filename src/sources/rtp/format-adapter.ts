/**
 * Conversion of decoded audio to a stream's established rate and channel
 * count, for a stream whose payload type changes to one that decodes
 * differently (PCMU at 8 kHz to Opus at 48 kHz stereo, say). The usual
 * stream never needs one.
 */
import { Resampler } from '../../audio/resampler.ts';

export interface SampleFormat {
  sampleRateHz: number;
  channels: number;
}

export class FormatAdapter {
  readonly input: SampleFormat;
  readonly output: SampleFormat;
  private readonly resampler: Resampler;

  private constructor(input: SampleFormat, output: SampleFormat, resampler: Resampler) {
    this.input = input;
    this.output = output;
    this.resampler = resampler;
  }

  static async create(input: SampleFormat, output: SampleFormat): Promise<FormatAdapter> {
    const resampler = await Resampler.create({
      channels: output.channels,
      inputSampleRateHz: input.sampleRateHz,
      outputSampleRateHz: output.sampleRateHz,
    });
    return new FormatAdapter(input, output, resampler);
  }

  /** Converts interleaved samples; the result is a fresh array. */
  process(samples: Float32Array): Float32Array {
    const mapped = mapChannels(samples, this.input.channels, this.output.channels);
    const resampled = this.resampler.process(mapped);
    return resampled === mapped ? mapped : resampled.slice();
  }

  destroy(): void {
    this.resampler.destroy();
  }
}

/** Averages to mono, copies mono to every channel, or takes channels in turn between other counts. */
export function mapChannels(samples: Float32Array, inputChannels: number, outputChannels: number): Float32Array {
  if (inputChannels === outputChannels) {
    return samples;
  }
  const frames = Math.floor(samples.length / inputChannels);
  const output = new Float32Array(frames * outputChannels);
  for (let frame = 0; frame < frames; frame++) {
    const inputOffset = frame * inputChannels;
    if (outputChannels === 1) {
      let sum = 0;
      for (let channel = 0; channel < inputChannels; channel++) {
        sum += samples[inputOffset + channel]!;
      }
      output[frame] = sum / inputChannels;
      continue;
    }
    for (let channel = 0; channel < outputChannels; channel++) {
      output[frame * outputChannels + channel] = samples[inputOffset + (channel % inputChannels)]!;
    }
  }
  return output;
}

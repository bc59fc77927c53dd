import { AudioFormatError } from '../errors.ts';

export interface ChannelMixerOptions {
  inputChannels: number;
  outputChannels: number;
  /** 0-based input channels to take; all input channels when omitted. */
  channelSelection?: number[];
}

/** Mixing rule from selected channels to output channels, as `ChannelMixer` lists them. */
type MixMode = 'identity' | 'map' | 'average' | 'copy' | 'average-copy';

/**
 * Selects and mixes channels of interleaved float PCM:
 * - as many selected channels as output channels: selected channel k becomes output channel k;
 * - one output channel: the average of the selected channels;
 * - one selected channel: copied to every output channel;
 * - otherwise: the average of the selected channels, copied to every output channel.
 *
 * Averaging keeps full-scale input below full scale, at the cost of 6 dB
 * when one of two channels is silent.
 */
export class ChannelMixer {
  readonly inputChannels: number;
  readonly outputChannels: number;
  readonly selection: readonly number[];
  readonly mode: MixMode;
  private output = new Float32Array(0);

  /** @throws AudioFormatError when a selected channel does not exist in the input. */
  constructor(options: ChannelMixerOptions) {
    const { inputChannels, outputChannels } = options;
    if (!Number.isInteger(inputChannels) || inputChannels < 1) {
      throw new AudioFormatError(`invalid input channel count ${inputChannels}; it must be a whole number of at least 1`);
    }
    if (!Number.isInteger(outputChannels) || outputChannels < 1) {
      throw new AudioFormatError(`invalid output channel count ${outputChannels}; it must be a whole number of at least 1`);
    }
    const selection = options.channelSelection ?? Array.from({ length: inputChannels }, (_, index) => index);
    if (selection.length === 0) {
      throw new AudioFormatError('channel selection is empty; select at least one input channel or omit it to take all');
    }
    for (const channel of selection) {
      if (!Number.isInteger(channel) || channel < 0 || channel >= inputChannels) {
        throw new AudioFormatError(
          `selected channel ${channel + 1} (0-based index ${channel}) does not exist in ${inputChannels}-channel input; select channels 1 to ${inputChannels}`,
        );
      }
    }
    this.inputChannels = inputChannels;
    this.outputChannels = outputChannels;
    this.selection = [...selection];
    this.mode = chooseMode(inputChannels, outputChannels, selection);
  }

  /**
   * Mixes interleaved input frames. Returns the input itself when nothing
   * changes, otherwise a view of an internal buffer that the next call
   * overwrites.
   */
  mix(input: Float32Array): Float32Array {
    if (this.mode === 'identity') {
      return input;
    }
    const frames = Math.floor(input.length / this.inputChannels);
    const output = this.reserve(frames * this.outputChannels);
    const inputChannels = this.inputChannels;
    const outputChannels = this.outputChannels;
    const selection = this.selection;
    switch (this.mode) {
      case 'map':
        for (let frame = 0; frame < frames; frame++) {
          for (let channel = 0; channel < outputChannels; channel++) {
            output[frame * outputChannels + channel] = input[frame * inputChannels + selection[channel]!]!;
          }
        }
        break;
      case 'average':
      case 'average-copy':
      case 'copy': {
        const scale = 1 / selection.length;
        for (let frame = 0; frame < frames; frame++) {
          let sum = 0;
          for (const channel of selection) {
            sum += input[frame * inputChannels + channel]!;
          }
          const value = selection.length === 1 ? sum : sum * scale;
          for (let channel = 0; channel < outputChannels; channel++) {
            output[frame * outputChannels + channel] = value;
          }
        }
        break;
      }
    }
    return output;
  }

  private reserve(samples: number): Float32Array {
    if (this.output.length < samples) {
      this.output = new Float32Array(samples);
    }
    return this.output.subarray(0, samples);
  }
}

function chooseMode(inputChannels: number, outputChannels: number, selection: readonly number[]): MixMode {
  const takesAllInOrder = selection.length === inputChannels && selection.every((channel, index) => channel === index);
  if (takesAllInOrder && inputChannels === outputChannels) {
    return 'identity';
  }
  if (selection.length === outputChannels) {
    return 'map';
  }
  if (outputChannels === 1) {
    return 'average';
  }
  if (selection.length === 1) {
    return 'copy';
  }
  return 'average-copy';
}

/**
 * The audio path of a live source, without Node streams: each block the
 * source emits is converted, framed and handed on in the source's data
 * event, or in the call that delivers it when the source's Readable is a
 * LiveReadable. A live source cannot wait for its consumer, and every stream hop
 * costs CPU on every packet of every stream.
 */
import { finished, type Readable } from 'node:stream';

import type { AudioFrame, PcmBlock } from './format.ts';
import type { FrameCutter } from './framer.ts';
import { LiveReadable } from './live-readable.ts';
import type { PcmConversion } from './pcm-converter.ts';

export interface LivePathOptions {
  /** Object-mode Readable of PcmBlock; it is put in flowing mode. */
  readable: Readable;
  conversion: PcmConversion;
  cutter: FrameCutter;
  /** Takes every frame, synchronously; the frame's Buffer is its own. */
  onFrame: (frame: AudioFrame) => void;
}

/**
 * Moves audio from `readable` to `onFrame` until the source ends, then
 * hands on the resampler's tail and the last, shorter frame. Resolves when
 * everything is handed on; rejects, after handing on what it could, when
 * the source fails or a block cannot be converted.
 */
export function runLivePath(options: LivePathOptions): Promise<void> {
  const { readable, conversion, cutter, onFrame } = options;
  const frameEncoded = (encoded: Buffer): void => {
    cutter.write(encoded, onFrame);
  };
  return new Promise<void>((resolve, reject) => {
    const onData = (block: PcmBlock): void => {
      try {
        conversion.convert(block, frameEncoded);
      } catch (error) {
        stopConsuming();
        readable.destroy(error as Error);
      }
    };
    const direct = readable instanceof LiveReadable ? readable : undefined;
    const stopConsuming = (): void => {
      readable.off('data', onData);
      direct?.setConsumer(undefined);
    };
    readable.on('data', onData);
    direct?.setConsumer(onData);
    finished(readable, (error) => {
      stopConsuming();
      let failure: unknown = error ?? undefined;
      try {
        if (failure === undefined) {
          conversion.finish(frameEncoded);
        } else {
          conversion.destroy();
        }
        cutter.finish(onFrame);
      } catch (finishError) {
        failure ??= finishError;
      }
      if (failure === undefined) {
        resolve();
      } else {
        reject(failure as Error);
      }
    });
  });
}

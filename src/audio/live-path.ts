/**
 * The audio path of a live source, without Node streams: each block the
 * source emits is converted, framed and handed on in the source's data
 * event. A live source cannot wait for its consumer, and every stream hop
 * costs CPU on every packet of every stream.
 */
import { finished, type Readable } from 'node:stream';

import type { AudioFrame, PcmBlock } from './format.ts';
import type { FrameCutter } from './framer.ts';
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
        readable.off('data', onData);
        readable.destroy(error as Error);
      }
    };
    readable.on('data', onData);
    finished(readable, (error) => {
      readable.off('data', onData);
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

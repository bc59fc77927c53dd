/**
 * The device capture state machine (registry, shared capture, device
 * sources) driven by a scripted capture host and a manual clock. The ALSA
 * test devices cover real capture. They cannot report input overflows,
 * fail a read or fail an open on demand, and their timing cannot be
 * controlled, so these cases are scripted here. Nothing here imitates
 * naudiodon: the host below replaces the whole audio library behind
 * `CaptureHost`.
 */
import assert from 'node:assert/strict';
import type { Readable } from 'node:stream';
import { describe, it } from 'node:test';

import { pino } from 'pino';

import type { PcmBlock } from '../../src/audio/format.ts';
import type { Clock } from '../../src/clock.ts';
import type { DeviceSourceConfig } from '../../src/config/types.ts';
import { SourceError } from '../../src/errors.ts';
import type {
  CaptureHost,
  CaptureReadResult,
  CaptureRequest,
  CaptureStream,
  InputDevice,
} from '../../src/sources/device/capture-host.ts';
import { DeviceCaptureRegistry } from '../../src/sources/device/device-capture-registry.ts';
import { DeviceSource } from '../../src/sources/device/device-source.ts';

const SAMPLE_RATE_HZ = 48_000;
/** 20 ms at 48 kHz, the capture's default block. */
const BLOCK_FRAMES = 960;

/** A clock whose time moves only when the test advances it, firing due timers in order. */
class ManualClock implements Clock {
  private currentMs = 0;
  private nextId = 0;
  private readonly timers = new Map<number, { dueMs: number; callback: () => void }>();

  nowMs(): number {
    return this.currentMs;
  }

  setTimeout(callback: () => void, delayMs: number): NodeJS.Timeout {
    const id = this.nextId++;
    this.timers.set(id, { dueMs: this.currentMs + delayMs, callback });
    return { id, unref() {} } as unknown as NodeJS.Timeout;
  }

  clearTimeout(timer: NodeJS.Timeout): void {
    this.timers.delete((timer as unknown as { id: number }).id);
  }

  /** Moves time forward, firing each due timer and letting the promises it settles run. */
  async advance(durationMs: number): Promise<void> {
    const endMs = this.currentMs + durationMs;
    for (;;) {
      const due = [...this.timers.entries()]
        .filter(([, timer]) => timer.dueMs <= endMs)
        .sort(([, a], [, b]) => a.dueMs - b.dueMs)[0];
      if (due === undefined) {
        break;
      }
      const [id, timer] = due;
      this.timers.delete(id);
      this.currentMs = timer.dueMs;
      timer.callback();
      await settle();
    }
    this.currentMs = endMs;
    await settle();
  }
}

/** Lets pending promise chains and immediate callbacks run. */
async function settle(): Promise<void> {
  for (let turn = 0; turn < 5; turn++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** An input stream whose reads return what the test emits, in order. */
class ScriptedStream implements CaptureStream {
  readonly sampleFormat = 'int16';
  readonly request: CaptureRequest;
  closed = false;
  private readonly queued: CaptureReadResult[] = [];
  private pendingRead: ((result: CaptureReadResult) => void) | undefined;

  constructor(request: CaptureRequest) {
    this.request = request;
  }

  read(): Promise<CaptureReadResult> {
    if (this.closed) {
      return Promise.resolve({ kind: 'ended' });
    }
    const next = this.queued.shift();
    if (next !== undefined) {
      return Promise.resolve(next);
    }
    return new Promise((resolve) => {
      this.pendingRead = resolve;
    });
  }

  emit(result: CaptureReadResult): void {
    const pending = this.pendingRead;
    this.pendingRead = undefined;
    if (pending === undefined) {
      this.queued.push(result);
    } else {
      pending(result);
    }
  }

  /** Emits one block in which every sample of channel c is `value + c / 100`. */
  emitBlock(value: number): void {
    const { channels, blockFrames } = this.request;
    const samples = new Float32Array(blockFrames * channels);
    for (let index = 0; index < samples.length; index++) {
      samples[index] = value + (index % channels) / 100;
    }
    this.emit({ kind: 'data', samples });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.emit({ kind: 'ended' });
  }
}

class ScriptedHost implements CaptureHost {
  devices: InputDevice[];
  readonly streams: ScriptedStream[] = [];
  /** Opens that fail before the next one succeeds. */
  failingOpens = 0;

  constructor(devices: InputDevice[]) {
    this.devices = devices;
  }

  async listDevices(): Promise<InputDevice[]> {
    return this.devices.map((device) => ({ ...device }));
  }

  async openCapture(request: CaptureRequest): Promise<CaptureStream> {
    if (this.failingOpens > 0) {
      this.failingOpens -= 1;
      throw new SourceError(`scripted failure opening "${request.device.name}"`);
    }
    const stream = new ScriptedStream(request);
    this.streams.push(stream);
    return stream;
  }

  get lastStream(): ScriptedStream {
    const stream = this.streams.at(-1);
    assert.ok(stream, 'no stream was opened');
    return stream;
  }
}

function device(overrides: Partial<InputDevice> = {}): InputDevice {
  return {
    index: 3,
    name: 'USB Audio Interface: Multichannel (hw:1,0)',
    hostApi: 'ALSA',
    maxInputChannels: 4,
    defaultSampleRateHz: SAMPLE_RATE_HZ,
    isDefaultInput: false,
    ...overrides,
  };
}

function deviceConfig(overrides: Partial<DeviceSourceConfig> = {}): DeviceSourceConfig {
  return { type: 'device', device: 'USB Audio', ...overrides };
}

interface Harness {
  host: ScriptedHost;
  clock: ManualClock;
  registry: DeviceCaptureRegistry;
  logs: Array<Record<string, unknown>>;
  open(config: DeviceSourceConfig): ReturnType<DeviceCaptureRegistry['open']>;
}

function createHarness(devices: InputDevice[] = [device()]): Harness {
  const host = new ScriptedHost(devices);
  const clock = new ManualClock();
  const registry = new DeviceCaptureRegistry({ loadHost: async () => host });
  const logs: Array<Record<string, unknown>> = [];
  const logger = pino(
    { level: 'debug', base: undefined },
    { write: (line: string) => void logs.push(JSON.parse(line) as Record<string, unknown>) },
  );
  return { host, clock, registry, logs, open: (config) => registry.open(config, { logger, clock }) };
}

/** Blocks the Readable holds now, without waiting. */
function readBlocks(readable: Readable): PcmBlock[] {
  const blocks: PcmBlock[] = [];
  for (let block = readable.read() as PcmBlock | null; block !== null; block = readable.read() as PcmBlock | null) {
    blocks.push(block);
  }
  return blocks;
}

function messages(logs: Array<Record<string, unknown>>, message: string): Array<Record<string, unknown>> {
  return logs.filter((line) => line['msg'] === message);
}

describe('device capture recovery', () => {
  it('overflow is counted and skipped on the clock', async () => {
    const harness = createHarness();
    const opened = await harness.open(deviceConfig({ channels: [2] }));
    assert.equal(opened.sampleRateHz, SAMPLE_RATE_HZ);
    assert.equal(opened.channels, 4, 'a hardware device is captured with all its channels');
    assert.deepEqual(opened.channelSelection, [1]);
    const stream = harness.host.lastStream;
    assert.equal(stream.request.blockFrames, BLOCK_FRAMES);

    stream.emitBlock(0.1);
    stream.emit({ kind: 'overflow', lostFrames: BLOCK_FRAMES });
    stream.emitBlock(0.2);
    stream.emit({ kind: 'overflow', lostFrames: BLOCK_FRAMES });
    stream.emitBlock(0.3);
    await settle();

    const blocks = readBlocks(opened.source.readable);
    assert.deepEqual(
      blocks.map((block) => block.timestampMs),
      [0, 40, 80],
      'each lost block leaves a 20 ms gap',
    );
    assert.ok(blocks.every((block) => block.channels === 4 && block.sampleRateHz === SAMPLE_RATE_HZ));
    assert.equal(blocks[1]?.samples[1], Math.fround(0.21));

    const [stats] = harness.registry.stats();
    assert.equal(stats?.inputOverflows, 2);
    assert.equal(stats?.lostFrames, 2 * BLOCK_FRAMES);
    assert.equal(stats?.capturedFrames, 3 * BLOCK_FRAMES);
    assert.equal(stats?.failures, 0, 'an overflow does not replace the stream');
    assert.equal(harness.host.streams.length, 1);
    const warnings = messages(harness.logs, 'input overflow: the device captured audio that was not read in time and is lost');
    assert.equal(warnings.length, 1, 'overflows within the warning interval share one warning');
    opened.source.stop();
  });

  it('failed read reopens with doubling delays', async () => {
    const harness = createHarness();
    const opened = await harness.open(deviceConfig({ channels: [1] }));
    const first = harness.host.lastStream;
    first.emitBlock(0.1);
    await settle();

    harness.host.failingOpens = 2;
    first.emit({ kind: 'failed', message: 'device unplugged' });
    await settle();
    assert.ok(first.closed, 'the failed stream is closed');
    const [failure] = messages(harness.logs, 'device capture failed; reopening the device');
    assert.equal(failure?.['reason'], 'input stream failed: device unplugged');

    // Attempts at 250 ms, then 500 and 1000 ms after the previous one.
    await harness.clock.advance(249);
    assert.equal(messages(harness.logs, 'reopening the input device failed; retrying').length, 0);
    await harness.clock.advance(1);
    assert.equal(messages(harness.logs, 'reopening the input device failed; retrying').length, 1);
    await harness.clock.advance(499);
    assert.equal(messages(harness.logs, 'reopening the input device failed; retrying').length, 1);
    await harness.clock.advance(1);
    assert.equal(messages(harness.logs, 'reopening the input device failed; retrying').length, 2);
    await harness.clock.advance(999);
    assert.equal(harness.host.streams.length, 1);
    await harness.clock.advance(1);
    assert.equal(harness.host.streams.length, 2, 'the third attempt opens the device');
    const [reopened] = messages(harness.logs, 'input device reopened');
    assert.equal(reopened?.['attempt'], 3);
    assert.equal(reopened?.['outageMs'], 1750);

    harness.host.lastStream.emitBlock(0.2);
    await settle();
    const blocks = readBlocks(opened.source.readable);
    // No silence is invented: the second block follows the first after the 1750 ms outage.
    assert.deepEqual(
      blocks.map((block) => block.timestampMs),
      [0, 20 + 1750],
    );
    assert.equal(opened.source.readable.readableEnded, false, 'the source stays open');
    const [stats] = harness.registry.stats();
    assert.equal(stats?.failures, 1);
    assert.equal(stats?.reopens, 1);
    assert.equal(stats?.outageMs, 1750);
    opened.source.stop();
  });

  it('stalled stream is replaced', async () => {
    const harness = createHarness();
    const opened = await harness.open(deviceConfig({ channels: [1] }));
    const first = harness.host.lastStream;

    await harness.clock.advance(1999);
    assert.equal(first.closed, false, 'under 2 s without audio is not a stall');
    await harness.clock.advance(1);
    assert.ok(first.closed, 'a stream without audio for 2 s is closed');
    const [failure] = messages(harness.logs, 'device capture failed; reopening the device');
    assert.equal(failure?.['reason'], 'no audio for 2000 ms');

    await harness.clock.advance(250);
    assert.equal(harness.host.streams.length, 2);
    opened.source.stop();
  });

  it('missing device is found again by name', async () => {
    const harness = createHarness();
    const opened = await harness.open(deviceConfig({ device: 3, channels: [1] }));
    const first = harness.host.lastStream;
    assert.equal(first.request.device.index, 3);

    harness.host.devices = [];
    first.emit({ kind: 'ended' });
    await settle();
    await harness.clock.advance(250);
    const [retry] = messages(harness.logs, 'reopening the input device failed; retrying');
    assert.match(
      String((retry?.['err'] as { message?: unknown } | undefined)?.message),
      /input device "USB Audio Interface: Multichannel \(hw:1,0\)" not found/,
    );

    // The device returns under another index, as after unplugging and plugging in again.
    harness.host.devices = [device({ index: 5 })];
    await harness.clock.advance(500);
    assert.equal(harness.host.streams.length, 2);
    assert.equal(harness.host.lastStream.request.device.index, 5);
    opened.source.stop();
  });

  it('streams share one capture per device', async () => {
    const harness = createHarness();
    const left = await harness.open(deviceConfig({ channels: [1] }));
    const right = await harness.open(deviceConfig({ channels: [2] }));
    const both = await harness.open(deviceConfig({ channels: [1, 2] }));
    assert.equal(harness.host.streams.length, 1, 'one device stream feeds every source');
    assert.deepEqual(right.channelSelection, [1]);
    assert.deepEqual(both.channelSelection, [0, 1]);

    harness.host.lastStream.emitBlock(0.5);
    await settle();
    for (const opened of [left, right, both]) {
      const blocks = readBlocks(opened.source.readable);
      assert.equal(blocks.length, 1);
      assert.equal(blocks[0]?.channels, 4);
    }

    left.source.stop();
    right.source.stop();
    assert.equal(harness.host.lastStream.closed, false, 'the capture stays open while a source uses it');
    both.source.stop();
    await settle();
    assert.ok(harness.host.lastStream.closed, 'the last source closes the capture');
    assert.equal(harness.registry.size, 0);
    assert.equal(messages(harness.logs, 'device capture closed').length, 1);
  });

  it('plugin device reopens for more channels', async () => {
    // ALSA plugin devices report up to 128 channels, so they are opened with the channels the streams take.
    const harness = createHarness([device({ name: 'pulse', maxInputChannels: 32 })]);
    const first = await harness.open(deviceConfig({ device: 'pulse', channels: [1] }));
    assert.equal(harness.host.lastStream.request.channels, 1);
    harness.host.lastStream.emitBlock(0.1);
    await settle();

    const second = await harness.open(deviceConfig({ device: 'pulse', channels: [3] }));
    assert.equal(harness.host.streams.length, 2);
    assert.ok(harness.host.streams[0]?.closed);
    assert.equal(harness.host.lastStream.request.channels, 3);
    assert.equal(second.channels, 3);

    harness.host.lastStream.emitBlock(0.2);
    await settle();
    assert.deepEqual(
      readBlocks(first.source.readable).map((block) => block.channels),
      [1, 3],
    );
    assert.deepEqual(
      readBlocks(second.source.readable).map((block) => block.channels),
      [3],
    );

    // A stream without source.channels takes two channels of a plugin device.
    const third = await harness.open(deviceConfig({ device: 'pulse' }));
    assert.deepEqual(third.channelSelection, [0, 1]);
    for (const opened of [first, second, third]) {
      opened.source.stop();
    }
  });

  it('stream joining during reopen widens it', async () => {
    const harness = createHarness([device({ name: 'pulse', maxInputChannels: 32 })]);
    const first = await harness.open(deviceConfig({ device: 'pulse', channels: [1] }));
    harness.host.lastStream.emit({ kind: 'failed', message: 'device unplugged' });
    await settle();

    const second = await harness.open(deviceConfig({ device: 'pulse', channels: [2] }));
    assert.equal(harness.host.streams.length, 1, 'nothing opens before the backoff delay');
    assert.equal(second.channels, 2);
    await harness.clock.advance(250);
    assert.equal(harness.host.streams.length, 2);
    assert.equal(harness.host.lastStream.request.channels, 2, 'the reopen takes the channels of both streams');

    harness.host.lastStream.emitBlock(0.4);
    await settle();
    assert.equal(readBlocks(second.source.readable).length, 1);
    first.source.stop();
    second.source.stop();
  });

  it('failed channel change keeps the capture', async () => {
    const harness = createHarness([device({ name: 'pulse', maxInputChannels: 32 })]);
    const first = await harness.open(deviceConfig({ device: 'pulse', channels: [1] }));

    harness.host.failingOpens = 1;
    await assert.rejects(harness.open(deviceConfig({ device: 'pulse', channels: [8] })), /scripted failure opening "pulse"/);
    await settle();
    assert.equal(harness.host.streams.length, 2, 'the old channel count is opened again');
    assert.equal(harness.host.lastStream.request.channels, 1);

    harness.host.lastStream.emitBlock(0.3);
    await settle();
    assert.equal(readBlocks(first.source.readable).length, 1);
    first.source.stop();
  });

  it('stop during backoff closes capture', async () => {
    const harness = createHarness();
    const opened = await harness.open(deviceConfig({ channels: [1] }));
    harness.host.failingOpens = 100;
    harness.host.lastStream.emit({ kind: 'failed', message: 'device unplugged' });
    await settle();
    await harness.clock.advance(250);
    assert.equal(messages(harness.logs, 'reopening the input device failed; retrying').length, 1);

    opened.source.stop();
    await settle();
    await harness.clock.advance(60_000);
    assert.equal(messages(harness.logs, 'reopening the input device failed; retrying').length, 1, 'no attempt after stop');
    assert.equal(harness.registry.size, 0);
    assert.equal(opened.source.readable.readableLength, 0);
  });

  it('source drops blocks its consumer cannot take', async () => {
    const harness = createHarness();
    const opened = await harness.open(deviceConfig({ channels: [1] }));
    assert.ok(opened.source instanceof DeviceSource);
    const stream = harness.host.lastStream;
    // 20 s of 20 ms blocks fill the source; the next one is dropped.
    for (let block = 0; block < 1001; block++) {
      stream.emitBlock(0.1);
    }
    await settle();
    assert.deepEqual(opened.source.stats, { blocks: 1000, droppedBlocks: 1, droppedMs: 20 });
    assert.equal(messages(harness.logs, 'stream is not keeping up with the device; dropping new audio').length, 1);

    readBlocks(opened.source.readable);
    stream.emitBlock(0.2);
    await settle();
    const [next] = readBlocks(opened.source.readable);
    assert.equal(next?.timestampMs, 1001 * 20, 'the dropped block leaves a gap on the clock');
    opened.source.stop();
  });

  it('ambiguous device name is rejected', async () => {
    const harness = createHarness([device(), device({ index: 4, name: 'USB Audio Interface: Digital (hw:1,1)' })]);
    await assert.rejects(
      harness.open(deviceConfig()),
      /source\.device "USB Audio" matches 2 input devices \(3 "USB Audio Interface: Multichannel \(hw:1,0\)", 4 "USB Audio Interface: Digital \(hw:1,1\)"\); use more of the name or the device index/,
    );
    const opened = await harness.open(deviceConfig({ device: 'usb audio interface: digital' }));
    assert.equal(harness.host.lastStream.request.device.index, 4);
    opened.source.stop();
  });
});

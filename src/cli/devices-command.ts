import { SourceError } from '../errors.ts';
import { EXIT_FAILURE } from '../service/agent.ts';
import type { InputDevice } from '../sources/device/capture-host.ts';
import { NaudiodonCaptureHost } from '../sources/device/naudiodon-capture-host.ts';
import { NaudiodonUnavailableError } from '../sources/device/naudiodon-loader.ts';

export interface DevicesCommandArgs {
  json: boolean;
}

/** Exit code when naudiodon is missing, from sysexits.h (EX_UNAVAILABLE: a required program is missing). */
const EXIT_UNAVAILABLE = 69;

/**
 * Lists the input devices PortAudio finds, with the index, name, host API,
 * channel count and default rate that a `device` source can name. Returns
 * the exit code.
 */
export async function runDevicesCommand(args: DevicesCommandArgs, out: NodeJS.WritableStream): Promise<number> {
  let devices: InputDevice[];
  try {
    const host = await NaudiodonCaptureHost.load();
    devices = (await host.listDevices()).filter((device) => device.maxInputChannels > 0);
  } catch (error) {
    if (!(error instanceof SourceError)) {
      throw error;
    }
    process.stderr.write(`modulate-agent: ${error.message}\n`);
    return error instanceof NaudiodonUnavailableError ? EXIT_UNAVAILABLE : EXIT_FAILURE;
  }

  if (args.json) {
    const listed = devices.map((device) => ({
      index: device.index,
      name: device.name,
      hostApi: device.hostApi,
      maxInputChannels: device.maxInputChannels,
      defaultSampleRateHz: device.defaultSampleRateHz,
      isDefaultInput: device.isDefaultInput,
    }));
    out.write(`${JSON.stringify(listed, null, 2)}\n`);
    return 0;
  }

  if (devices.length === 0) {
    out.write('No input devices found.\n');
    return 0;
  }
  out.write(formatTable(devices));
  out.write('\n* default input. A device source names a device by index, by part of its name, or as "default".\n');
  return 0;
}

function formatTable(devices: InputDevice[]): string {
  const header = ['INDEX', 'NAME', 'HOST API', 'INPUT CHANNELS', 'DEFAULT RATE (Hz)'];
  const rows = devices.map((device) => [
    `${device.index}${device.isDefaultInput ? '*' : ''}`,
    device.name,
    device.hostApi,
    String(device.maxInputChannels),
    String(device.defaultSampleRateHz),
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const format = (cells: string[]): string =>
    cells
      .map((cell, column) => cell.padEnd(widths[column]!))
      .join('  ')
      .trimEnd();
  return `${[header, ...rows].map(format).join('\n')}\n`;
}

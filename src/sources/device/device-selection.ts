import { SourceError } from '../../errors.ts';
import type { InputDevice } from './capture-host.ts';

/** `source.device` of the config: "default", a PortAudio index, or part of a device name. */
export type DeviceSelector = string | number;

/** Devices named in an error message; a host can have dozens. */
const MAX_LISTED_DEVICES = 12;

/**
 * Finds the input device a config names. A name matches exactly first, then
 * as a case-insensitive substring, which must match only one input device.
 *
 * @throws SourceError naming the selector, the input devices and the fix when no single input device matches.
 */
export function selectInputDevice(devices: InputDevice[], selector: DeviceSelector): InputDevice {
  const inputs = devices.filter((device) => device.maxInputChannels > 0);

  if (typeof selector === 'number') {
    const device = devices.find((candidate) => candidate.index === selector);
    if (device === undefined) {
      throw notFound(`no sound device has index ${selector}`, inputs);
    }
    if (device.maxInputChannels === 0) {
      throw notFound(`sound device ${selector} ("${device.name}") has no input channels`, inputs);
    }
    return device;
  }

  if (selector === 'default') {
    const device = inputs.find((candidate) => candidate.isDefaultInput);
    if (device === undefined) {
      throw notFound('the sound system reports no default input device', inputs);
    }
    return device;
  }

  const exact = inputs.find((candidate) => candidate.name === selector);
  if (exact !== undefined) {
    return exact;
  }
  const needle = selector.toLowerCase();
  const matches = inputs.filter((candidate) => candidate.name.toLowerCase().includes(needle));
  if (matches.length === 1) {
    return matches[0]!;
  }
  if (matches.length === 0) {
    throw notFound(`no input device name contains "${selector}"`, inputs);
  }
  throw new SourceError(
    `source.device "${selector}" matches ${matches.length} input devices (${describeDevices(matches)}); ` +
      'use more of the name or the device index',
  );
}

/**
 * Finds the device a capture opened earlier, by exact name, because
 * PortAudio indexes change when devices come and go.
 */
export function findDeviceByName(devices: InputDevice[], name: string): InputDevice | undefined {
  return devices.find((device) => device.name === name && device.maxInputChannels > 0);
}

function notFound(problem: string, inputs: InputDevice[]): SourceError {
  const available = inputs.length === 0 ? 'the sound system reports no input devices' : `input devices: ${describeDevices(inputs)}`;
  return new SourceError(`${problem}; ${available}; check source.device or run "modulate-agent devices"`);
}

function describeDevices(devices: InputDevice[]): string {
  const listed = devices
    .slice(0, MAX_LISTED_DEVICES)
    .map((device) => `${device.index} "${device.name}"`)
    .join(', ');
  return devices.length > MAX_LISTED_DEVICES ? `${listed} and ${devices.length - MAX_LISTED_DEVICES} more` : listed;
}

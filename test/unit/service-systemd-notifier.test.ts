import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { createSilentLogger } from '../../src/logger.ts';
import { SystemdNotifier } from '../../src/service/systemd-notifier.ts';
import { makeTempDir, withTimeout } from '../helpers/tools.ts';

interface ReceivingSocket {
  bind(path: string): void;
  on(event: 'message', listener: (data: Buffer) => void): void;
  close(): void;
}

/** Binds a real AF_UNIX datagram socket, as systemd's notification socket is. */
async function bindReceiver(path: string): Promise<{ next: () => Promise<string>; close: () => void }> {
  const require = createRequire(import.meta.url);
  const { createSocket } = require('unix-dgram') as { createSocket: (type: 'unix_dgram') => ReceivingSocket };
  const socket = createSocket('unix_dgram');
  const queue: string[] = [];
  const waiters: Array<(message: string) => void> = [];
  socket.on('message', (data) => {
    const waiter = waiters.shift();
    if (waiter === undefined) {
      queue.push(data.toString());
    } else {
      waiter(data.toString());
    }
  });
  socket.bind(path);
  return {
    next: () => {
      const queued = queue.shift();
      return queued === undefined ? new Promise((resolve) => waiters.push(resolve)) : Promise.resolve(queued);
    },
    close: () => socket.close(),
  };
}

describe('systemd notifier', () => {
  it('disabled without NOTIFY_SOCKET', () => {
    const notifier = new SystemdNotifier({ logger: createSilentLogger(), env: {} });

    assert.equal(notifier.enabled, false);
    notifier.ready();
    notifier.startWatchdog();
    notifier.close();
  });

  it('sends datagrams to the socket', async () => {
    const path = join(await makeTempDir('notifier-'), 'notify.sock');
    const receiver = await bindReceiver(path);
    const notifier = new SystemdNotifier({ logger: createSilentLogger(), env: { NOTIFY_SOCKET: path } });
    try {
      notifier.ready('streaming');
      assert.equal(await withTimeout(receiver.next(), 5000, 'READY'), 'READY=1\nSTATUS=streaming\n');
      notifier.stopping();
      assert.equal(await withTimeout(receiver.next(), 5000, 'STOPPING'), 'STOPPING=1\nSTATUS=ending streams and finalizing jobs\n');
    } finally {
      notifier.close();
      receiver.close();
    }
  });

  it('watchdog interval is half of WATCHDOG_USEC', () => {
    const notifier = new SystemdNotifier({
      logger: createSilentLogger(),
      env: { NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: '30000000', WATCHDOG_PID: '42' },
      pid: 42,
    });

    assert.equal(notifier.watchdogIntervalMs, 15000);
  });

  it('watchdog of another pid is ignored', () => {
    const notifier = new SystemdNotifier({
      logger: createSilentLogger(),
      env: { NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: '30000000', WATCHDOG_PID: '41' },
      pid: 42,
    });

    assert.equal(notifier.watchdogIntervalMs, undefined);
  });

  it('abstract socket is reported, not used', () => {
    const notifier = new SystemdNotifier({ logger: createSilentLogger(), env: { NOTIFY_SOCKET: '@/org/systemd/notify' } });

    assert.equal(notifier.enabled, false);
  });
});

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { Emulator } from '../../src/emulator/emulator.ts';
import { makeTempDir, startCli, withTimeout, writeConfig } from '../helpers/tools.ts';
import { serviceConfigYaml, startNotifyReceiver, waitForLog, type NotifyReceiver } from './service-helpers.ts';

describe('systemd notifications', () => {
  let emulator: Emulator;
  let dir: string;
  let receiver: NotifyReceiver;

  before(async () => {
    emulator = await Emulator.start({ port: 0 });
    dir = await makeTempDir('service-notify-');
    receiver = await startNotifyReceiver(join(dir, 'notify.sock'));
  });

  after(async () => {
    await receiver.close();
    await emulator.close();
  });

  it('sends READY, WATCHDOG, RELOADING and STOPPING', async () => {
    const config = await writeConfig(
      dir,
      serviceConfigYaml({
        baseUrl: emulator.baseUrl,
        resultsDir: join(dir, 'results'),
        jobs: [{ name: 'notify', streams: [{ alias: 'room', source: '{type: tone, speech_like: true}' }] }],
      }),
    );
    const firstEvent = emulator.events.length;
    // 400 ms watchdog: the agent must ping every 200 ms.
    const run = startCli(['run', '--config', config], {
      TEST_API_KEY: emulator.apiKey,
      NOTIFY_SOCKET: join(dir, 'notify.sock'),
      WATCHDOG_USEC: '400000',
    });

    const ready = await receiver.waitFor((message) => message.startsWith('READY=1'), 20_000, 'READY=1');
    const open = emulator.events.slice(firstEvent).find((event) => event.type === 'stream_open' && event.alias === 'room');
    assert.ok(open, 'READY=1 came before the stream was open');
    assert.match(ready, /^STATUS=streaming 1 aliases in 1 jobs$/m);

    await receiver.waitFor(
      () => receiver.messages().filter((message) => message === 'WATCHDOG=1\n').length >= 3,
      10_000,
      'three WATCHDOG=1',
    );

    run.child.kill('SIGHUP');
    const reloading = await receiver.waitFor((message) => message.startsWith('RELOADING=1'), 10_000, 'RELOADING=1');
    assert.match(reloading, /^MONOTONIC_USEC=\d+$/m);
    await waitForLog(run, (line) => line['msg'] === 'config reloaded; no job or stream changed', 10_000, 'config reloaded');
    const reloadingIndex = receiver.messages().indexOf(reloading);
    await receiver.waitFor(
      () => receiver.messages().slice(reloadingIndex + 1).some((message) => message.startsWith('READY=1')),
      10_000,
      'READY=1 after the reload',
    );

    run.child.kill('SIGTERM');
    await receiver.waitFor((message) => message.startsWith('STOPPING=1'), 10_000, 'STOPPING=1');
    const { code } = await withTimeout(run.exited, 20_000, 'the agent to exit');
    assert.equal(code, 0, `agent exited with ${code}; stderr: ${run.stderr()}`);

    const messages = receiver.messages();
    const readyIndex = messages.findIndex((message) => message.startsWith('READY=1'));
    const stoppingIndex = messages.findIndex((message) => message.startsWith('STOPPING=1'));
    assert.ok(readyIndex < stoppingIndex, 'STOPPING=1 came before READY=1');
  });
});

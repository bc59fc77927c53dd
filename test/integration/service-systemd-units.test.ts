/**
 * Checks the unit files in systemd/ with `systemd-analyze verify`, which
 * parses them as systemd would load them. verify also requires the ExecStart
 * binary to exist. So the test checks copies in which `/usr/bin/node
 * /opt/modulate-agent/dist/cli/main.js` is rewritten to this machine's node
 * and this repository, and every other line is verified as shipped.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';

import { DEFAULT_DELIVERY } from '../../src/config/schema.ts';
import { REPO_ROOT, execFileAsync, makeTempDir } from '../helpers/tools.ts';

const SHIPPED_EXEC = '/usr/bin/node /opt/modulate-agent/dist/cli/main.js';
const DEFAULT_SHUTDOWN_TIMEOUT_S = 20;

/** Runs systemd-analyze verify in `dir`; a missing tool fails the test with how to install it. */
async function verify(dir: string, units: string[]): Promise<{ code: number; stderr: string }> {
  try {
    const { stderr } = await execFileAsync('systemd-analyze', ['verify', ...units], { cwd: dir });
    return { code: 0, stderr };
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { code: number | string; stderr?: string };
    if (failure.code === 'ENOENT') {
      throw new Error('systemd-analyze is not installed; install it with "apt-get install -y systemd" (scripts/test-all.sh does)');
    }
    return { code: Number(failure.code), stderr: failure.stderr ?? '' };
  }
}

/** Copies a unit into `dir` under `name`, with ExecStart pointing at this machine's node and repository. */
async function copyForVerify(unit: string, dir: string, name: string): Promise<string> {
  const text = await readFile(join(REPO_ROOT, 'systemd', unit), 'utf8');
  assert.ok(text.includes(`ExecStart=${SHIPPED_EXEC} `), `${unit}: ExecStart does not run ${SHIPPED_EXEC}`);
  await writeFile(join(dir, name), text.replace(SHIPPED_EXEC, `${process.execPath} ${join(REPO_ROOT, 'dist/cli/main.js')}`));
  return name;
}

/** Reads `Key=value` settings of a unit; a key set twice keeps every value. */
function settings(text: string): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (match !== null) {
      found.set(match[1] as string, [...(found.get(match[1] as string) ?? []), match[2] as string]);
    }
  }
  return found;
}

describe('systemd units', () => {
  let dir: string;

  before(async () => {
    dir = await makeTempDir('service-units-');
  });

  it('verify accepts both units', async () => {
    const plain = await copyForVerify('modulate-agent.service', dir, 'modulate-agent.service');
    // A template is verified through an instance of it.
    const instance = await copyForVerify('modulate-agent@.service', dir, 'modulate-agent@room7.service');
    const result = await verify(dir, [plain, instance]);

    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stderr, '', 'systemd-analyze printed warnings');
  });

  it('verify rejects a broken unit', async () => {
    const text = await readFile(join(REPO_ROOT, 'systemd', 'modulate-agent.service'), 'utf8');
    await writeFile(join(dir, 'broken.service'), text.replace('Type=notify', 'Type=notfy'));
    const result = await verify(dir, ['broken.service']);

    assert.match(result.stderr, /Failed to parse service type/);
  });

  for (const unit of ['modulate-agent.service', 'modulate-agent@.service']) {
    it(`${unit} settings`, async () => {
      const unitSettings = settings(await readFile(join(REPO_ROOT, 'systemd', unit), 'utf8'));
      const one = (key: string): string | undefined => unitSettings.get(key)?.at(-1);
      const execStart = one('ExecStart') ?? '';

      assert.equal(one('Type'), 'notify');
      assert.ok(execStart.startsWith('/usr/bin/node '), 'ExecStart must run node directly, not npm');
      assert.match(execStart, / run --config \/etc\/modulate-agent\/(agent|%i)\.yaml$/);
      assert.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID');
      assert.equal(one('Restart'), 'on-failure');
      assert.equal(one('RestartPreventExitStatus'), '78');
      const stopSeconds = Number(/^(\d+)s$/.exec(one('TimeoutStopSec') ?? '')?.[1]);
      assert.ok(stopSeconds > DEFAULT_SHUTDOWN_TIMEOUT_S, `TimeoutStopSec ${stopSeconds} s is not above the agent's 20 s deadline`);
      assert.ok(stopSeconds * 1000 > DEFAULT_DELIVERY.done_timeout_ms);
      assert.match(one('LoadCredential') ?? '', /^api_key:\/etc\/modulate-agent\//);
      assert.equal(one('DynamicUser'), 'yes');
      assert.equal(one('ProtectSystem'), 'strict');
      assert.equal(one('NoNewPrivileges'), 'yes');
      assert.equal(one('PrivateTmp'), 'yes');
      assert.equal(one('SupplementaryGroups'), 'audio');
      assert.equal(one('RestrictAddressFamilies'), 'AF_UNIX AF_INET AF_INET6');
      assert.match(one('StateDirectory') ?? '', /^modulate-agent(\/%i)?$/);
    });
  }
});

/**
 * The systemd unit shipped in the package: systemd itself accepts it (when systemd-analyze is installed), and it
 * grants the agent CAP_NET_ADMIN and no other capability.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { describe, expect, test } from 'vitest';

const UNIT = path.resolve(import.meta.dirname, '../../systemd/portwall-agent.service');
const analyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((p) => existsSync(p));
const pkg = JSON.parse(readFileSync(path.resolve(import.meta.dirname, '../../package.json'), 'utf8')) as { files: string[] };

describe('systemd/portwall-agent.service', () => {
  const lines = readFileSync(UNIT, 'utf8').split('\n').filter((l) => !l.startsWith('#'));
  const value = (key: string) => lines.filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));

  test('runs `portwall agent`, restarts on failure, reloads with SIGHUP, ships in the package', () => {
    expect(value('ExecStart')[0]).toMatch(/portwall agent /);
    expect(value('Restart')).toEqual(['on-failure']);
    expect(value('ExecReload')[0]).toContain('-HUP');
    expect(pkg.files).toContain('systemd');
  });

  test('CAP_NET_ADMIN and no other capability', () => {
    expect(value('AmbientCapabilities')).toEqual(['CAP_NET_ADMIN']);
    expect(value('CapabilityBoundingSet')).toEqual(['CAP_NET_ADMIN']);
    expect(value('NoNewPrivileges')).toEqual(['yes']);
  });

  test.skipIf(!analyze)('systemd-analyze verify accepts it', () => {
    const out = execFileSync(analyze!, ['verify', UNIT], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(out).toBe('');
  });
});

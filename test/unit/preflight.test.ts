/**
 * Preflight reads /proc and /sys: here a tree of its own stands in for them (the real ones: test/kernel/cli.test.ts).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { afterEach, beforeEach, expect, test } from 'vitest';

import { validateState } from '../../src/model/validate.js';
import { preflight } from '../../src/preflight.js';
import { port, state, webGroup } from '../helpers/states.js';

let root: string;
beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), 'pw-preflight-'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

const put = (file: string, content = ''): void => {
  mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
  writeFileSync(path.join(root, file), content);
};
const devices = (...names: string[]): void => {
  for (const n of names) mkdirSync(path.join(root, 'sys/class/net', n), { recursive: true });
};
const bridged = validateState(state('bridged', [webGroup()], [port(1, ['sg-web']), port(2, ['sg-web'])]));
const routed = validateState(state('routed', [webGroup()], [port(1, ['sg-web'])]));

test('a bridged network: br_netfilter not loaded, or its sysctls not 1, is a warning', () => {
  devices('br-a', 'tap1', 'tap2');
  expect(preflight(bridged, { root })).toEqual([
    "br_netfilter is not loaded: traffic between ports of a bridge does not reach portwall's inet chains, so security groups are not enforced on bridged network net-a (modprobe br_netfilter)",
  ]);
  put('proc/sys/net/bridge/bridge-nf-call-iptables', '0\n');
  put('proc/sys/net/bridge/bridge-nf-call-ip6tables', '1\n');
  expect(preflight(bridged, { root })).toEqual([
    "net.bridge.bridge-nf-call-iptables is 0: traffic between ports of a bridge does not reach portwall's inet chains, so security groups are not enforced on bridged network net-a (sysctl -w net.bridge.bridge-nf-call-iptables=1)",
  ]);
  put('proc/sys/net/bridge/bridge-nf-call-iptables', '1\n');
  expect(preflight(bridged, { root })).toEqual([]);
  // Loaded as a module (its sysctls not yet in this namespace): nothing to say about them.
  rmSync(path.join(root, 'proc'), { recursive: true });
  put('sys/module/br_netfilter/refcnt', '1\n');
  expect(preflight(bridged, { root })).toEqual([]);
  // Routed networks do not need it.
  rmSync(path.join(root, 'sys/module'), { recursive: true });
  expect(preflight(routed, { root })).toEqual([]);
});

test('port and bridge devices that do not exist are warnings, at most ten lines', () => {
  put('proc/sys/net/bridge/bridge-nf-call-iptables', '1');
  devices('tap2');
  expect(preflight(bridged, { root })).toEqual([
    'network net-a: bridge br-a does not exist (its rules are programmed and apply once it does)',
    'port port-00001: device tap1 does not exist (its rules are programmed and apply once it does)',
  ]);
  const many = validateState(state('routed', [webGroup()], Array.from({ length: 14 }, (_, i) => port(i + 1, ['sg-web']))));
  const w = preflight(many, { root });
  expect(w).toHaveLength(11);
  expect(w[10]).toBe('3 more devices do not exist');
});

test('for another namespace only the host-wide check runs (its sysctls and devices are not visible from here)', () => {
  put('proc/sys/net/bridge/bridge-nf-call-iptables', '0');
  expect(preflight(bridged, { root, sameNamespace: false })).toEqual([]);
  rmSync(path.join(root, 'proc'), { recursive: true });
  expect(preflight(bridged, { root, sameNamespace: false })).toHaveLength(1);
});

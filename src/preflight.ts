/**
 * Preflight: what the host must provide for a state's rules to mean what they say, read from /proc and /sys
 * (no child process). Each finding is a warning; none blocks an apply, since the rules are right either way
 * and the host may be fixed afterwards (a VM's tap device appears when it starts).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import type { Model } from './model/types.js';

export interface PreflightOptions {
  /** Where /proc and /sys are found (tests point it at a tree of their own); default `/`. */
  root?: string;
  /**
   * Whether /proc/sys/net and /sys/class/net show the namespace being programmed. They show the caller's own
   * (sysfs: the one it was mounted in), so with another namespace only the host-wide checks run.
   */
  sameNamespace?: boolean;
}

// A host with many stopped VMs would otherwise print one line per port.
const MAX_DEVICE_LINES = 10;

/** The warnings for `model` on this host, one line each (without a "warning:" prefix). */
export function preflight(model: Model, options: PreflightOptions = {}): string[] {
  const at = (p: string): string => path.join(options.root ?? '/', p);
  const local = options.sameNamespace ?? true;
  const warnings: string[] = [];

  const bridged = [...model.networks.values()].filter((n) => n.mode === 'bridged');
  if (bridged.length > 0) {
    const which = `${bridged.length === 1 ? 'network' : 'networks'} ${bridged.map((n) => n.id).join(', ')}`;
    const unfiltered = `traffic between ports of a bridge does not reach portwall's inet chains, so security groups are not enforced on bridged ${which}`;
    const sysctl = (v: string): string => at(`proc/sys/net/bridge/bridge-nf-call-${v}`);
    // A module shows in /sys/module; built into the kernel, only its sysctls show (in every namespace).
    if (!existsSync(at('sys/module/br_netfilter')) && !existsSync(sysctl('iptables'))) {
      warnings.push(`br_netfilter is not loaded: ${unfiltered} (modprobe br_netfilter)`);
    } else if (local) {
      for (const v of ['iptables', 'ip6tables']) {
        const value = readValue(sysctl(v));
        if (value !== undefined && value !== '1') {
          warnings.push(`net.bridge.bridge-nf-call-${v} is ${value}: ${unfiltered} (sysctl -w net.bridge.bridge-nf-call-${v}=1)`);
        }
      }
    }
  }

  if (local) {
    const missing: string[] = [];
    for (const n of bridged) {
      if (n.bridge !== undefined && !existsSync(at(`sys/class/net/${n.bridge}`))) missing.push(`network ${n.id}: bridge ${n.bridge} does not exist`);
    }
    for (const p of model.ports.values()) {
      if (!existsSync(at(`sys/class/net/${p.device}`))) missing.push(`port ${p.id}: device ${p.device} does not exist`);
    }
    const shown = missing.slice(0, MAX_DEVICE_LINES);
    warnings.push(...shown.map((m) => `${m} (its rules are programmed and apply once it does)`));
    if (missing.length > shown.length) warnings.push(`${missing.length - shown.length} more devices do not exist`);
  }
  return warnings;
}

function readValue(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}

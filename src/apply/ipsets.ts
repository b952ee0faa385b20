/**
 * Publishing remote-group memberships as ipsets (config `publishIpsets`), for hosts that still run iptables
 * consumers (`-m set --match-set`), e.g. during a migration from Neutron's iptables driver. The sets carry the
 * same names the iptables renderer uses (`pw4-<group>-<hash>`), so `portwall plan --format iptables` output
 * matches what is published. Each set is replaced atomically (filled aside, then swapped in); sets of groups
 * no longer used as remote groups are destroyed unless an iptables rule still references them.
 */
import type { IpsetClient } from '../ipset.js';
import type { PolicyIR } from '../compile/ir.js';
import { memberSetName } from '../render/iptables-syntax.js';

/** The ipset operations publishing needs (an IpsetClient fits; tests may pass a fake). */
export type IpsetLike = Pick<IpsetClient, 'list' | 'create' | 'replace' | 'destroy'>;

export interface PublishResult {
  /** Sets whose members were (re)published. */
  published: string[];
  /** Stale sets destroyed. */
  destroyed: string[];
  /** Stale sets kept because something (an iptables rule) still uses them. */
  inUse: string[];
}

export const OURS = /^pw[46]-/;

/**
 * Makes the namespace's `pw4-…`/`pw6-…` ipsets hold exactly the IR's remote-group members. Sets that already
 * hold them are left alone, so applying the same state twice changes nothing.
 */
export async function publishIpsets(ipsets: IpsetLike, ir: PolicyIR): Promise<PublishResult> {
  const existing = new Map((await ipsets.list()).map((s) => [s.name, s]));
  const result: PublishResult = { published: [], destroyed: [], inUse: [] };
  const wanted = new Set<string>();
  for (const m of ir.members) {
    const name = memberSetName(m.groupId, m.family);
    wanted.add(name);
    // `ipset list` prints host entries of a hash:net set without their /32 or /128.
    const members = m.prefixes.map((p) => p.replace(m.family === 4 ? /\/32$/ : /\/128$/, '')).sort();
    const have = existing.get(name);
    if (have && same((have.members ?? []).map(String), members)) continue;
    if (!have) await ipsets.create(name, { type: 'hash:net', family: m.family === 4 ? 'ipv4' : 'ipv6' });
    await ipsets.replace(name, members);
    result.published.push(name);
  }
  for (const [name, info] of existing) {
    if (!OURS.test(name) || wanted.has(name)) continue;
    // The kernel refuses to destroy a set an iptables rule references: keep it, report it.
    if (info.references > 0) result.inUse.push(name);
    else {
      await ipsets.destroy(name);
      result.destroyed.push(name);
    }
  }
  return result;
}

function same(have: readonly string[], want: readonly string[]): boolean {
  return have.length === want.length && [...have].sort().every((m, i) => m === want[i]);
}

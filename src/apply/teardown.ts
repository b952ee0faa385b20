/**
 * Removing everything portwall owns in a namespace (`portwall teardown`): its nftables tables — the inet and
 * bridge tables and the `ip` NAT table, under the configured names — deleted together in one batch, then the
 * remote-group ipsets it publishes (`pw4-…`/`pw6-…`, config `publishIpsets`). Nothing else is touched.
 */
import { ownTables } from '../compile/names.js';
import { PortwallError } from '../errors.js';
import { IpsetClient } from '../ipset.js';
import { DEFAULT_CONFIG, type PortwallConfig } from '../model/types.js';
import { Nft } from '../nft/client.js';
import type { Family, Table } from '../nft/types.js';
import { OURS as PUBLISHED_SET, type IpsetLike } from './ipsets.js';

export interface TeardownOptions {
  /** Network namespace (a name under /run/netns or a path); default: the caller's. */
  netns?: string;
  /** The table names to remove (default {@link DEFAULT_CONFIG}'s). */
  config?: Pick<PortwallConfig, 'tables'>;
  /** Test seams: the nftables client and the ipset client (default: real ones in `netns`). */
  nft?: Nft;
  ipsets?: Pick<IpsetLike, 'list' | 'destroy'>;
}

export interface TeardownResult {
  /** The tables deleted (none: there were none), in one batch. */
  tables: { family: Family; name: string }[];
  /** The ruleset generation after that batch (absent when nothing was deleted). */
  genid?: number;
  /** Published ipsets destroyed. */
  ipsets: string[];
  /** Published ipsets kept because an iptables rule still references them (the kernel refuses). */
  inUse: string[];
}

// Another writer committing between the listing and the batch makes the kernel refuse it: list again.
const MAX_CONFLICTS = 5;

/** Deletes portwall's tables in one batch and destroys its published ipsets. Running it twice is harmless. */
export async function teardown(options: TeardownOptions = {}): Promise<TeardownResult> {
  const ours = ownTables((options.config ?? DEFAULT_CONFIG).tables);
  const nft = options.nft ?? new Nft(options.netns === undefined ? {} : { netns: options.netns });
  const result: TeardownResult = { tables: [], ipsets: [], inUse: [] };
  for (let attempt = 0; ; attempt++) {
    const found: Table[] = [];
    const genids: number[] = [];
    for (const [family, name] of ours) {
      const listing = await nft.list({ family, table: name });
      genids.push(listing.genid);
      for (const o of listing.objects) if (o.kind === 'table' && o.name === name) found.push(o);
    }
    // The oldest generation seen: if anyone committed in between, the kernel refuses the batch and we list again.
    const genid = Math.min(...genids);
    if (found.length === 0) break;
    const tx = nft.transaction();
    for (const t of found) tx.delete({ kind: 'table', family: t.family, name: t.name });
    try {
      result.genid = (await tx.commit({ genid })).genid;
      result.tables = found.map((t) => ({ family: t.family, name: t.name }));
      break;
    } catch (err) {
      if (err instanceof PortwallError && err.code === 'ERR_CONFLICT' && attempt < MAX_CONFLICTS) continue;
      throw err;
    }
  }
  const ipsets = options.ipsets ?? new IpsetClient(options.netns === undefined ? {} : { netns: options.netns });
  for (const set of await ipsets.list(undefined, { headersOnly: true })) {
    if (!PUBLISHED_SET.test(set.name)) continue;
    // The kernel refuses to destroy a set an iptables rule references: keep it, report it.
    if (set.references > 0) result.inUse.push(set.name);
    else {
      await ipsets.destroy(set.name);
      result.ipsets.push(set.name);
    }
  }
  return result;
}

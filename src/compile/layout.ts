/**
 * The layout stage (PolicyIR → nftables objects): the desired content of portwall's own tables, as
 * docs/dataplane.md describes it — a small fixed skeleton of rules whose matches are set lookups
 * (`./layout-skeleton.ts`), set elements claimed by ports, rule profiles and address-pair prefixes
 * (`./layout-units.ts`), and the chains and sets of the security groups and rule profiles (`./layout-groups.ts`). This module computes everything at once (a fresh apply, `plan`, the tests); the
 * library handle keeps the same units and recomputes only those a change touches.
 */
import type { NftObject } from '../nft/types.js';
import { ClaimStore } from './claims.js';
import type { CompiledRule, PolicyIR } from './ir.js';
import { memberFamilies, skeleton, type RemoteUse, type SkeletonInput } from './layout-skeleton.js';
import { groupObjects, profileObjects } from './layout-groups.js';
import { familyKey, netMemberKeys, portClaims, prefixClaims, prefixPorts, profilePointer, zoneNetKeys } from './layout-units.js';
import { shapeOf } from './layout-ports.js';

export { ND_DAD, ND_IN, ND_OUT } from './layout-skeleton.js';

/** The desired objects of portwall's tables (inet always, bridge when a network is bridged). */
export function layout(ir: PolicyIR): NftObject[] {
  const nets = new Set(ir.ports.flatMap(netMemberKeys));
  const zoneNets = new Set(ir.ports.flatMap(zoneNetKeys));
  const input: SkeletonInput = {
    config: ir.config, networks: ir.networks, remote: remoteUses(ir.groups.map((g) => g.rules)), nets, zoneNets,
    stateless: ir.ports.some((p) => !p.stateful),
  };
  const members = memberFamilies(input.remote);
  const store = new ClaimStore();
  for (const p of ir.ports) {
    store.set(`port:${p.portId}`, portClaims(p, members));
    store.set(`pp:${p.portId}`, profilePointer(p));
  }
  const groups = new Set(ir.groups.map((g) => g.id));
  const own: NftObject[] = ir.groups.flatMap((g) => groupObjects(ir.config, g, (id, f) => nets.has(familyKey(id, f))));
  for (const pr of ir.profiles) {
    const p = profileObjects(ir.config, pr, (id) => groups.has(id));
    store.set(`profile:${pr.id}`, p.claims);
    own.push(...p.objects);
  }
  store.set('prefixes', prefixClaims(prefixPorts(ir.ports), members));
  return withElements([...skeleton(input), ...own], store);
}

/** Which remote groups the rule lists name, per (direction, family, shape). */
export function remoteUses(lists: Iterable<readonly CompiledRule[]>): Map<string, Set<RemoteUse>> {
  const out = new Map<string, Set<RemoteUse>>();
  for (const rules of lists) {
    for (const r of rules) {
      if (r.remote.kind !== 'group') continue;
      let uses = out.get(r.remote.groupId);
      if (!uses) out.set(r.remote.groupId, (uses = new Set()));
      uses.add(`${r.direction === 'ingress' ? 'in' : 'out'}|${r.family}|${shapeOf(r)}`);
    }
  }
  return out;
}

/**
 * The skeleton with the store's elements added to its sets (each set's constant elements stay; a claimed
 * element of a set the skeleton does not declare is a portwall bug).
 */
export function withElements(objects: readonly NftObject[], store: ClaimStore): NftObject[] {
  const out = [...objects];
  const declared = new Map<string, { family: 'inet' | 'bridge'; table: string; name: string }>();
  for (const o of objects) if (o.kind === 'set') declared.set(`${o.family}:${o.name}`, { family: o.family as 'inet' | 'bridge', table: o.table, name: o.name });
  for (const setId of store.setIds().sort()) {
    const s = declared.get(setId);
    if (!s) throw new Error(`elements claimed for ${setId}, which the skeleton does not declare`);
    out.push({ kind: 'elements', family: s.family, table: s.table, set: s.name, elements: store.elementList(setId) });
  }
  return out;
}

/**
 * Security-group rules as chains and sets (docs/dataplane.md, "Security groups and rule profiles"):
 * - a **group** is one chain per direction (`gi_…`, `go_…`) whose rules look up the group's own small sets —
 *   per (family, shape) `FIELDS . REMOTE_ADDR`, and per remote group and shape the rules' fields behind the
 *   remote group's member sets (keys: {@link SetShape}). A match writes {@link allowedMark} into the mark and
 *   returns. Its sets carry a version in their name: a change that only adds elements adds them in place, one
 *   that deletes a few from small sets deletes them in place; any other change builds the next version (new
 *   sets, the chain refilled, the old sets deleted whole), since deletes from a concatenated interval set cost
 *   milliseconds each in the kernel (the engine decides: src/apply/engine.ts, `needsVersion`);
 * - a **rule profile** (the combination of groups a port has) is, per direction, one element in the verdict
 *   map of each group slot (`prof_in`, `prof_in_s1`, …): the port chains look the profile up in each slot's map
 *   in turn and jump to that group's chain, until one allowed the packet. No chain of its own (every commit
 *   visits every chain of the namespace), except a CloudStack-flavour profile's, for its built-in rules. A port
 *   joining a profile is one hash element; a rule change touches only its group, however many ports and
 *   profiles use it.
 */
import { F, and, eq, inSet, jump, ret, set, type Operand, type Part } from '../nft/match.js';
import type { DataTypeName, Element, NftObject, Value } from '../nft/types.js';
import { CLOUDSTACK_GROUP, type PortwallConfig } from '../model/types.js';
import { own, type Claim } from './claims.js';
import type { CompiledRule, GroupPolicy, ProfilePolicy } from './ir.js';
import { ElementSink, clip, shapeOf } from './layout-ports.js';
import {
  INET, groupChainName, groupRefSetName, groupSetName, memberNetSetName, memberSetName, profileChainName, profileLabel, type SetShape,
} from './names.js';
import { markBits } from './policy.js';
import { TableBuilder } from './tables.js';

const FAMILIES = [4, 6] as const;
const DIRS = ['in', 'out'] as const;
const SHAPES: SetShape[] = ['l4', 'any'];

/**
 * The mark a group's chain writes when one of its rules allows a packet: every tag bit set, a value no profile
 * number takes (their number space leaves it out). The port chains check it only after writing the profile,
 * so a bridged port's tag is never in the mark there.
 */
export function allowedMark(config: Pick<PortwallConfig, 'markMask'>): number {
  return markBits(config.markMask >>> 0).tagMask;
}

const dirOf = (r: CompiledRule): 'in' | 'out' => (r.direction === 'ingress' ? 'in' : 'out');

/** `ip saddr` for ingress, `ip daddr` for egress (the remote side). */
export function remoteField(f: 4 | 6, dir: 'in' | 'out'): Operand {
  const ip = f === 4 ? F.ip : F.ip6;
  return dir === 'in' ? ip.saddr : ip.daddr;
}

/** The packet fields of a set shape, in key order (before the remote address). */
export function shapeFields(shape: SetShape): Operand[] {
  return shape === 'l4' ? [F.meta.l4proto, F.th.sport, F.th.dport] : [];
}

/** The key types of a group's set of a shape: with the remote address, or (a remote group's references) without. */
export function setKey(family: 4 | 6, shape: SetShape, remote: boolean): DataTypeName[] {
  const addr = family === 4 ? 'ipv4_addr' : 'ipv6_addr';
  if (!remote) return shape === 'l4' ? ['inet_proto', 'inet_service', 'inet_service'] : ['inet_proto'];
  return shape === 'l4' ? ['inet_proto', 'inet_service', 'inet_service', addr] : [addr];
}

/**
 * The packet fields of a remote group's reference set: a shape's own, and for rules of any protocol
 * `meta l4proto` (their element is `0-255`), so that they too are an element with a counter and a rule id.
 */
function refFields(shape: SetShape): Operand[] {
  return shape === 'l4' ? shapeFields(shape) : [F.meta.l4proto];
}

const ANY_PORT = '0-65535';

/**
 * A rule's values in an `l4` key: ports as the destination range (any source); a protocol alone as any of both;
 * ICMP type and code as the first 16 bits (type × 256 + code, every code when unset), any checksum.
 */
function l4Values(r: CompiledRule): Value[] {
  const s = shapeOf(r);
  if (s === 'ports') return [r.protocol!, ANY_PORT, r.ports!.min === r.ports!.max ? r.ports!.min : `${r.ports!.min}-${r.ports!.max}`];
  if (s === 'icmp') {
    const base = r.icmp!.type * 256;
    const code = r.icmp!.code;
    return [r.protocol!, code === undefined ? `${base}-${base + 255}` : base + code, ANY_PORT];
  }
  return [r.protocol!, ANY_PORT, ANY_PORT];
}

/**
 * The chains and sets of one group (see the module comment); no table object. `hasNets` says which remote
 * groups have a member-prefix set (a member prefix wider than a host, in that family): only those get the
 * second rule that looks the source up there.
 */
export function groupObjects(config: PortwallConfig, g: GroupPolicy, hasNets: (groupId: string, family: 4 | 6) => boolean): NftObject[] {
  const t = new TableBuilder('inet', config.tables.inet);
  const allow = set(F.meta.mark, allowedMark(config));
  const word = { in: 'ingress', out: 'egress' } as const;
  for (const dir of DIRS) {
    const chain = t.chain(groupChainName(g.id, dir));
    const sink = new ElementSink();
    const refs = new ElementSink();
    const remotes = new Set<string>();
    for (const r of g.rules) {
      if (dirOf(r) !== dir) continue;
      // A rule for any protocol keeps its own shape: it must match packets without a transport header too.
      const shape: SetShape = shapeOf(r) === 'any' ? 'any' : 'l4';
      const fields = shape === 'l4' ? l4Values(r) : [];
      if (r.remote.kind === 'group') {
        remotes.add(r.remote.groupId);
        const name = groupRefSetName(g.id, r.remote.groupId, dir, r.family, shape, g.version);
        refs.add(name, setKey(r.family, shape, false), shape === 'l4' ? fields : ['0-255'], r.ruleId, ''); // see refFields
      } else {
        const remote = r.remote.kind === 'prefix' ? r.remote.prefix : r.family === 4 ? '0.0.0.0/0' : '::/0';
        sink.add(groupSetName(g.id, dir, r.family, shape, g.version), setKey(r.family, shape, true), [...fields, remote], r.ruleId, '');
      }
    }
    for (const f of FAMILIES) {
      for (const shape of SHAPES) {
        const name = groupSetName(g.id, dir, f, shape, g.version);
        const elements = sink.elements(name);
        if (elements.length === 0) continue;
        const s = t.set(name, setKey(f, shape, true), { interval: true, counter: true, order: 'last', comment: clip(`${word[dir]} IPv${f} ${shape} rules of ${g.id}`) });
        t.fill(name, elements);
        t.rule(chain, [inSet([...shapeFields(shape), remoteField(f, dir)], s), allow, ret()]);
      }
    }
    for (const remoteId of [...remotes].sort()) {
      for (const f of FAMILIES) {
        for (const shape of SHAPES) {
          const name = groupRefSetName(g.id, remoteId, dir, f, shape, g.version);
          const elements = refs.elements(name);
          if (elements.length === 0) continue;
          const s = t.set(name, setKey(f, shape, false), {
            interval: true, counter: true, order: 'last', comment: clip(`${word[dir]} IPv${f} ${shape} rules of ${g.id} with remote group ${remoteId}`),
          });
          t.fill(name, elements);
          const fields = refFields(shape);
          const why = clip(`remote group ${remoteId}`);
          t.rule(chain, [inSet(remoteField(f, dir), memberSetName(remoteId, f)), inSet(fields, s), allow, ret()], why);
          if (hasNets(remoteId, f)) {
            t.rule(chain, [inSet(remoteField(f, dir), { name: memberNetSetName(remoteId, f), flags: ['interval'] }), inSet(fields, s), allow, ret()], why);
          }
        }
      }
    }
  }
  return t.objects().filter((o) => o.kind !== 'table');
}

/** The elements of a group's sets (to tell a change that only adds from one that needs a new version). */
export function groupElements(objects: readonly NftObject[]): Map<string, Element[]> {
  const out = new Map<string, Element[]>();
  for (const o of objects) if (o.kind === 'elements') out.set(o.set, o.elements);
  return out;
}

/**
 * The objects and claims of one rule profile: its `profiles` entry and, per direction, an element in the map of
 * each group slot — slot k jumps to the chain of its k-th group (sorted). `hasGroup` says which of its groups
 * exist (a chain is jumped to only when it does). A CloudStack-flavour profile's built-in rules (DNS, open
 * egress) need a chain: such a profile has one, which slot 0 jumps to (its groups, then the built-in rules).
 * `slots` is how many slots it fills.
 */
export function profileObjects(config: PortwallConfig, pr: ProfilePolicy, hasGroup: (id: string) => boolean): { objects: NftObject[]; claims: Claim[]; slots: number } {
  const t = new TableBuilder('inet', config.tables.inet);
  const allowed = allowedMark(config);
  const tagKey = and(F.meta.mark, allowed);
  const label = profileLabel(pr.key);
  const claims: Claim[] = [own(`inet:${INET.profiles}`, { key: [pr.id], comment: label })];
  const groups = [...new Set(pr.groupIds)].filter((g) => g !== CLOUDSTACK_GROUP && hasGroup(g)).sort();
  const builtIn = pr.rules.filter((r) => r.groupId === CLOUDSTACK_GROUP);
  const slot = (dir: 'in' | 'out', k: number, chain: string) =>
    claims.push(own(`inet:${INET.profileSlot(dir, k)}`, { key: [pr.id], verdict: { code: 'jump', chain }, comment: label }));
  let slots = 0;
  for (const dir of DIRS) {
    const mine = builtIn.filter((r) => dirOf(r) === dir);
    if (builtIn.length === 0) {
      groups.forEach((g, k) => slot(dir, k, groupChainName(g, dir)));
      slots = Math.max(slots, groups.length);
      continue;
    }
    if (groups.length === 0 && mine.length === 0) continue;
    const chain = t.chain(profileChainName(dir, pr.id));
    groups.forEach((g, i) => {
      t.rule(chain, [jump(groupChainName(g, dir))], clip(g));
      // After the last group the port chain checks the mark itself.
      if (i < groups.length - 1 || mine.length > 0) t.rule(chain, [eq(tagKey, allowed), ret()]);
    });
    for (const r of mine) t.rule(chain, [...inlineMatch(r), set(F.meta.mark, allowed), ret()], clip(r.ruleId));
    slot(dir, 0, chain);
    slots = Math.max(slots, 1);
  }
  return { objects: t.objects().filter((o) => o.kind !== 'table'), claims, slots };
}

/** A built-in rule (remote: anywhere, a protocol and one port at most) as plain matches. */
function inlineMatch(r: CompiledRule): Part[] {
  if (r.remote.kind !== 'any' || shapeOf(r) === 'icmp') throw new Error(`built-in rule ${r.ruleId} is not a plain rule`);
  const parts: Part[] = [eq(F.meta.nfproto, r.family === 4 ? 'ipv4' : 'ipv6')];
  if (r.protocol !== undefined) parts.push(eq(F.meta.l4proto, r.protocol));
  if (r.ports !== undefined && r.ports.min === r.ports.max) parts.push(eq(F.th.dport, r.ports.min));
  else if (r.ports !== undefined) throw new Error(`built-in rule ${r.ruleId} has a port range`);
  return parts;
}

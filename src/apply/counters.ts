/**
 * Hit counters from a listing of portwall's tables (docs/dataplane.md, "Counters"): packets and bytes per
 * security-group rule — each group's rule sets keep a counter per element, commented with the rule id — and
 * drops per base-policy step (every drop rule of the skeleton counts, commented with its step). A group's
 * rules are shared by every port in the group, so a rule's hits are the group's, whichever port they came
 * through; a port's report lists the rules of its groups.
 */
import type { Model } from '../model/types.js';
import { INET, groupSetVersion } from '../compile/names.js';
import type { NftObject, NftSet } from '../nft/types.js';

/** Hits of one security-group rule (every port in its group together). */
export interface RuleHits {
  ruleId: string;
  /** From the model when the caller has one, else from the comment of the group's set. */
  groupId?: string;
  packets: number;
  bytes: number;
}

/** Packets one drop rule of the base policy dropped. */
export interface StepHits {
  family: string;
  table: string;
  chain: string;
  /** The rule's comment: which step it is ("IPv4 anti-spoof", "no rule allows it", …). */
  step: string;
  packets: number;
  bytes: number;
}

/** A rule profile: its groups (the `profiles` set's label) and the ports that use it. */
export interface ProfileInfo {
  id: number;
  label: string;
  ports: string[];
}

export interface CounterReport {
  rules: RuleHits[];
  steps: StepHits[];
  profiles: ProfileInfo[];
}

// A drop, or (with a drop log) the jump to the chain that logs and then drops: `egress_dev_d3`.
const dropsHere = (v: { code: string; chain?: string }): boolean => v.code === 'drop' || (v.code === 'goto' && INET.isDropChain(v.chain ?? ''));

const num = (v: unknown): number => Number(typeof v === 'bigint' ? v : String(v));
/** The group a set's comment names (`ingress IPv4 ports rules of sg-web[ with remote group …]`). */
const groupOfComment = (comment: string | undefined): string | undefined => /rules of (.*?)(?: with remote group .*)?$/.exec(comment ?? '')?.[1];

/** Reads the counters of a listing; `model` names each rule's group. */
export function readCounters(objects: readonly NftObject[], model?: Model): CounterReport {
  const groupOf = new Map<string, string>();
  for (const g of model?.groups.values() ?? []) for (const r of g.rules) groupOf.set(r.id, g.id);
  const sets = new Map<string, NftSet>();
  for (const o of objects) if (o.kind === 'set') sets.set(`${o.family} ${o.table} ${o.name}`, o);
  const profiles = new Map<number, ProfileInfo>();
  const profile = (id: number): ProfileInfo => {
    let p = profiles.get(id);
    if (!p) profiles.set(id, (p = { id, label: '', ports: [] }));
    return p;
  };
  const rules = new Map<string, RuleHits>();
  const steps: StepHits[] = [];
  for (const o of objects) {
    if (o.kind === 'elements' && o.family === 'inet') {
      if (o.set === INET.profiles) for (const e of o.elements) profile(num(e.key[0])).label = e.comment ?? '';
      else if (o.set === INET.profile('dev') || o.set === INET.profile('tag')) {
        for (const e of o.elements) if (e.comment) profile(num(e.data)).ports.push(e.comment);
      } else if (groupSetVersion(o.set) && sets.get(`${o.family} ${o.table} ${o.set}`)?.counter) {
        const fromSet = groupOfComment(sets.get(`${o.family} ${o.table} ${o.set}`)?.comment);
        for (const e of o.elements) {
          if (!e.comment) continue;
          let r = rules.get(e.comment);
          if (!r) {
            rules.set(e.comment, (r = { ruleId: e.comment, packets: 0, bytes: 0 }));
            const g = groupOf.get(e.comment) ?? (model ? undefined : fromSet);
            if (g !== undefined) r.groupId = g;
          }
          r.packets += num(e.counter?.packets ?? 0);
          r.bytes += num(e.counter?.bytes ?? 0);
        }
      }
    } else if (o.kind === 'rule' && o.exprs.some((x) => x.type === 'immediate' && 'verdict' in x && dropsHere(x.verdict))) {
      const c = o.exprs.find((x) => x.type === 'counter');
      if (c && c.type === 'counter') {
        steps.push({ family: o.family, table: o.table, chain: o.chain, step: o.comment ?? '', packets: num(c.packets ?? 0), bytes: num(c.bytes ?? 0) });
      }
    }
  }
  return { rules: [...rules.values()].sort((a, b) => b.packets - a.packets || (a.ruleId < b.ruleId ? -1 : 1)), steps, profiles: [...profiles.values()].sort((a, b) => a.id - b.id) };
}

/** The groups a profile's label names (`profile g1,g2`); undefined when the label is a hash. */
function labelGroups(label: string): string[] | undefined {
  if (label === 'profile (no groups)') return [];
  return label.startsWith('profile ') && !label.startsWith('profile #') ? label.slice('profile '.length).split(',') : undefined;
}

/**
 * The report narrowed to one port (the rules of its groups, hits of every port in them; steps stay host-wide)
 * or one group's rules.
 */
export function narrowCounters(r: CounterReport, by: { port?: string; group?: string }): CounterReport {
  if (by.port !== undefined) {
    const p = r.profiles.find((x) => x.ports.includes(by.port!));
    const groups = p === undefined ? [] : labelGroups(p.label);
    const rules = groups === undefined ? r.rules : r.rules.filter((x) => x.groupId !== undefined && groups.includes(x.groupId));
    return { ...r, rules, profiles: p ? [p] : [] };
  }
  if (by.group !== undefined) {
    const profiles = r.profiles.filter((p) => labelGroups(p.label)?.includes(by.group!) ?? false);
    return { ...r, rules: r.rules.filter((x) => x.groupId === by.group), profiles };
  }
  return r;
}

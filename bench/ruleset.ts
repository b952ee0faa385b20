/**
 * A Neutron-shaped ruleset for benchmarks and tests: one chain per port with the rules Neutron's iptables
 * driver generates (base policy, anti-spoof, security-group rules), reached through two verdict maps keyed by
 * device name, as iptables' `sg-chain` physdev jumps are. This is the per-port-per-rule layout docs/dataplane.md
 * measures against; portwall's own layout comes from the compiler.
 */
import {
  F, accept, counter, drop, eq, inSet, ret, rule, vmap,
} from '../src/nft/match.js';
import type { Chain, Elements, Expr, NftSet, NftObject, Rule, Table } from '../src/nft/types.js';

export interface ShapeOptions {
  table?: string;
  ports: number;
  /** Security-group rules per port (the base policy adds 6 more). */
  sgRules?: number;
}

const family = 'inet' as const;

/** Device name of port i (≤ 15 bytes, like Neutron's `tap` + 11 characters of the port id). */
export const portDevice = (i: number): string => `tap${i.toString(16).padStart(8, '0')}`;
export const portChain = (i: number): string => `port-${i}`;
const v4 = (i: number): string => `192.0.2.${(i % 250) + 1}`;
const mac = (i: number): string =>
  `fa:16:3e:${[(i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;

/** The rules of one port's chain: 6 of base policy + `sgRules` security-group rules. */
export function portRules(i: number, sgRules: number, table: string): Rule[] {
  const chain = portChain(i);
  const r = (exprs: Expr[], comment?: string): Rule => ({
    kind: 'rule', family, table, chain, exprs, ...(comment ? { comment } : {}),
  });
  const rules: Rule[] = [
    r(rule(family, eq(F.ct.state, 'invalid'), drop())),
    r(rule(family, eq(F.ct.state, 'established,related'), accept())),
    r(rule(family, eq(F.udp.sport, 68), eq(F.udp.dport, 67), accept())),
    r(rule(family, eq(F.udp.sport, 67), eq(F.udp.dport, 68), drop())),
    r(rule(family, eq(F.ether.saddr, mac(i)), eq(F.ip.saddr, v4(i)), ret())),
    r(rule(family, eq(F.ip.daddr, v4(i)), counter(), drop())),
  ];
  for (let k = 0; k < sgRules; k++) {
    const remote = `198.51.100.${k % 256}`;
    const proto = k % 3 === 0 ? F.udp.dport : F.tcp.dport;
    const port = k % 5 === 0 ? `${1000 + k}-${1010 + k}` : 1000 + k;
    rules.push(r(rule(family, eq(F.ip.saddr, remote), eq(proto, port), counter(), accept()), `sg-rule-${i}-${k}`));
  }
  return rules;
}

/** Table, a forward base chain, the two verdict maps, per-port chains and rules, the map elements. */
export function neutronShape(opts: ShapeOptions): NftObject[] {
  const table = opts.table ?? 'pwbench';
  const sgRules = opts.sgRules ?? 30;
  const objs: NftObject[] = [];
  const t: Table = { kind: 'table', family, name: table };
  const base: Chain = {
    kind: 'chain', family, table, name: 'forward', hook: 'forward', priority: 0, type: 'filter', policy: 'accept',
  };
  const mapIn: NftSet = { kind: 'set', family, table, name: 'port-in', key: ['ifname'], data: 'verdict' };
  const mapOut: NftSet = { kind: 'set', family, table, name: 'port-out', key: ['ifname'], data: 'verdict' };
  objs.push(t, base, mapIn, mapOut);
  for (let i = 0; i < opts.ports; i++) objs.push({ kind: 'chain', family, table, name: portChain(i) });
  for (let i = 0; i < opts.ports; i++) objs.push(...portRules(i, sgRules, table));
  for (const [map, field] of [[mapIn, F.meta.oifname], [mapOut, F.meta.iifname]] as const) {
    const elements: Elements = {
      kind: 'elements', family, table, set: map.name,
      elements: Array.from({ length: opts.ports }, (_, i) => ({
        key: [portDevice(i)], verdict: { code: 'jump' as const, chain: portChain(i) },
      })),
    };
    objs.push(elements);
    objs.push({ kind: 'rule', family, table, chain: 'forward', exprs: rule(family, vmap(field, map)) });
  }
  return objs;
}

/** A plain (verdict-free) set for the update-cost probe, and a rule that uses it so it is live. */
export function probeSet(table: string): { set: NftSet; use: Rule } {
  const set: NftSet = { kind: 'set', family, table, name: 'probe', key: ['ipv4_addr'] };
  const use: Rule = {
    kind: 'rule', family, table, chain: 'forward', exprs: rule(family, inSet(F.ip.saddr, set), counter()),
  };
  return { set, use };
}


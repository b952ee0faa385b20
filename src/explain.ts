/**
 * `explain`: which step of a port's policy admits or drops a packet — the security-group rule, or the
 * base-policy step (anti-spoof, DHCP, neighbour discovery, router advertisements, a layer-2 guard, the
 * default drop). It asks the evaluator (src/compile/evaluate.ts), which follows the chains the layout builds;
 * the kernel tests check its answers against real packets (docs/dataplane.md).
 *
 * ```ts
 * explain(pw.policy()!, 'port-1', 'tcp 198.51.100.7:40000 -> 192.0.2.14:22');
 * // { allowed: true, direction: 'ingress', reason: 'rule', ruleId: 'r-ssh', groupId: 'sg-web', why: 'rule r-ssh of …' }
 * ```
 */
import { PortwallError } from './errors.js';
import { prefixContains } from './compile/addr.js';
import { evaluate, type Direction, type Packet } from './compile/evaluate.js';
import type { CompiledRule, PolicyIR, PortPolicy } from './compile/ir.js';
import { parseHostAddress } from './model/values.js';

/** The answer of {@link explain}. */
export interface Explanation {
  portId: string;
  direction: Direction;
  packet: Packet;
  allowed: boolean;
  /** The deciding step: 'rule', 'default', 'anti-spoof', 'dhcp', 'nd', 'router-advert', 'l2-guard', 'unfiltered'. */
  reason: string;
  /** With reason 'rule': the security-group rule and its group. */
  ruleId?: string;
  groupId?: string;
  /** One line for a person: the verdict and why. */
  why: string;
}

const PROTOCOLS: Record<string, number> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58, 'ipv6-icmp': 58, sctp: 132, udplite: 136, dccp: 33 };
const NAMES: Record<number, string> = { 6: 'tcp', 17: 'udp', 1: 'icmp', 58: 'icmpv6', 132: 'sctp', 136: 'udplite', 33: 'dccp' };

const bad = (message: string): PortwallError => new PortwallError('ERR_INVALID_VALUE', message, { field: 'packet' });

/** `ADDR[:PORT]`, IPv6 in brackets when a port follows (`[2001:db8::1]:443`). */
function endpoint(text: string, withPort: boolean): { addr: string; family: 4 | 6; port?: number } {
  let addr = text;
  let port: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (v6) [, addr, port] = v6 as unknown as [string, string, string | undefined];
  else if (text.split(':').length === 2) [addr, port] = text.split(':') as [string, string];
  const parsed = parseHostAddress(addr!);
  if (parsed.problem !== undefined) throw bad(`${JSON.stringify(text)}: ${parsed.problem}`);
  const out: { addr: string; family: 4 | 6; port?: number } = { addr: parsed.value.prefix.replace(/\/\d+$/, ''), family: parsed.value.family };
  if (port !== undefined) {
    const n = Number(port);
    if (!withPort) throw bad(`${JSON.stringify(text)}: this protocol has no ports`);
    if (!Number.isInteger(n) || n < 0 || n > 65535) throw bad(`${JSON.stringify(text)}: port must be 0–65535`);
    out.port = n;
  }
  return out;
}

/**
 * A packet from its text: `PROTO SRC[:PORT] -> DST[:PORT]` for tcp, udp, sctp, udplite, dccp (ports
 * required), `icmp|icmpv6 SRC -> DST [type N [code N]]`, or `proto N SRC -> DST`; optionally `mac MAC` (the
 * source MAC, for anti-spoof). Throws ERR_INVALID_VALUE naming what is wrong.
 */
export function parsePacket(text: string): Packet {
  const words = text.trim().split(/\s+/);
  let i = 0;
  let protocol: number | undefined;
  if (words[i] === 'proto') {
    protocol = Number(words[i + 1]);
    if (!Number.isInteger(protocol) || protocol < 0 || protocol > 255) throw bad(`protocol ${JSON.stringify(words[i + 1])}: a number 0–255`);
    i += 2;
  } else {
    protocol = PROTOCOLS[(words[i] ?? '').toLowerCase()];
    if (protocol === undefined) throw bad(`unknown protocol ${JSON.stringify(words[i] ?? '')} (tcp, udp, icmp, icmpv6, sctp, udplite, dccp or "proto N")`);
    i += 1;
  }
  const ported = [6, 17, 33, 132, 136].includes(protocol);
  if (words[i + 1] !== '->' || words[i + 2] === undefined) throw bad(`expected "SRC -> DST" after the protocol in ${JSON.stringify(text)}`);
  const src = endpoint(words[i]!, ported);
  const dst = endpoint(words[i + 2]!, ported);
  i += 3;
  if (src.family !== dst.family) throw bad(`${src.addr} and ${dst.addr} are of different families`);
  if (ported && (src.port === undefined || dst.port === undefined)) throw bad(`${NAMES[protocol]} needs both ports (SRC:PORT -> DST:PORT)`);
  const pkt: Packet = { family: src.family, protocol, src: src.addr, dst: dst.addr };
  if (ported) Object.assign(pkt, { sport: src.port, dport: dst.port });
  if ((protocol === 1 || protocol === 58) && (protocol === 1) !== (src.family === 4)) throw bad(`${NAMES[protocol]} between IPv${src.family} addresses`);
  while (i < words.length) {
    const [key, value] = [words[i], words[i + 1]];
    const n = Number(value);
    if ((key === 'type' || key === 'code') && (protocol === 1 || protocol === 58) && Number.isInteger(n) && n >= 0 && n <= 255) {
      pkt.icmp = { type: pkt.icmp?.type ?? 0, code: pkt.icmp?.code ?? 0, [key]: n };
    } else if (key === 'mac' && value && /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(value)) {
      pkt.srcMac = value.toLowerCase();
    } else throw bad(`unexpected ${JSON.stringify(words.slice(i).join(' '))} (type N, code N for ICMP; mac MAC)`);
    i += 2;
  }
  if ((protocol === 1 || protocol === 58) && !pkt.icmp) pkt.icmp = { type: protocol === 1 ? 8 : 128, code: 0 };
  return pkt;
}

/** The packet as `parsePacket` reads it. */
export function packetText(p: Packet): string {
  const at = (a: string, port?: number) => (port === undefined ? a : p.family === 6 ? `[${a}]:${port}` : `${a}:${port}`);
  const icmp = p.icmp ? ` type ${p.icmp.type} code ${p.icmp.code}` : '';
  return `${NAMES[p.protocol] ?? `proto ${p.protocol}`} ${at(p.src, p.sport)} -> ${at(p.dst, p.dport)}${icmp}`;
}

function owns(port: PortPolicy, addr: string): boolean {
  return port.fixedIps.some((ip) => prefixContains(ip, addr)) || port.spoof.some((s) => prefixContains(s.prefix, addr));
}

function ruleText(r: CompiledRule): string {
  const proto = r.protocol === undefined ? 'any protocol' : NAMES[r.protocol] ?? `protocol ${r.protocol}`;
  const ports = r.ports ? (r.ports.min === r.ports.max ? ` port ${r.ports.min}` : ` ports ${r.ports.min}-${r.ports.max}`) : '';
  const icmp = r.icmp ? ` type ${r.icmp.type}${r.icmp.code === undefined ? '' : ` code ${r.icmp.code}`}` : '';
  const remote = r.remote.kind === 'any' ? 'anywhere' : r.remote.kind === 'prefix' ? r.remote.prefix : `members of group ${r.remote.groupId}`;
  return `${r.direction} IPv${r.family} ${proto}${ports}${icmp} ${r.direction === 'ingress' ? 'from' : 'to'} ${remote}`;
}

const STEPS: Record<string, [allowed: string, dropped: string]> = {
  unfiltered: ['port security is off for this port (or it is a system port): everything passes', ''],
  'l2-guard': ['', "a layer-2 guard of the port's network drops it"],
  'anti-spoof': ['', "anti-spoof: the source is not one of the port's (MAC, address) pairs"],
  dhcp: ['DHCP: client messages from a port, and replies from the network\'s DHCP servers, pass without a rule', 'DHCP: a port may not act as a DHCP server, and replies come only from the network\'s DHCP servers'],
  nd: ['neighbour discovery and MLD pass without a rule', ''],
  'router-advert': ["router advertisements from the network's routers pass", "router advertisements: only the network's routers may send them, never a port"],
};

/**
 * Which step of the port's policy decides `packet` (text or {@link Packet}). The direction is inferred — the
 * port's own address as the destination is ingress, as the source egress — unless given.
 * @throws PortwallError ERR_INVALID_VALUE for an unknown port, a packet that does not parse, or a direction
 *   that cannot be inferred.
 */
export function explain(ir: PolicyIR, portId: string, packet: string | Packet, direction?: Direction): Explanation {
  const port = ir.ports.find((p) => p.portId === portId);
  if (!port) throw new PortwallError('ERR_INVALID_VALUE', `unknown port ${JSON.stringify(portId)}`, { field: 'port' });
  const pkt = typeof packet === 'string' ? parsePacket(packet) : packet;
  let dir = direction;
  if (dir === undefined) {
    const toPort = owns(port, pkt.dst), fromPort = owns(port, pkt.src);
    if (toPort === fromPort) {
      const which = toPort ? `both ${pkt.src} and ${pkt.dst} are` : `neither ${pkt.src} nor ${pkt.dst} is`;
      throw new PortwallError('ERR_INVALID_VALUE', `${which} port ${portId}'s address: give the direction (ingress or egress)`, { field: 'direction' });
    }
    dir = toPort ? 'ingress' : 'egress';
  }
  const d = evaluate(ir, port, dir, pkt);
  const out: Explanation = { portId, direction: dir, packet: pkt, allowed: d.allowed, reason: d.reason, why: '' };
  const verdict = d.allowed ? 'ALLOWED' : 'DROPPED';
  if (d.reason === 'rule') {
    const r = port.rules.find((x) => x.ruleId === d.ruleId)!;
    out.ruleId = r.ruleId;
    out.groupId = r.groupId;
    out.why = `${verdict}: rule ${r.ruleId} of group ${r.groupId} (${ruleText(r)})`;
  } else if (d.reason === 'default') {
    const groups = [...new Set(port.groupIds)];
    out.why = `${verdict}: no ${dir} rule of ${groups.length ? `group${groups.length > 1 ? 's' : ''} ${groups.join(', ')}` : 'any group (the port has none)'} admits it (default drop)`;
  } else {
    out.why = `${verdict}: ${STEPS[d.reason]?.[d.allowed ? 0 : 1] || d.reason}`;
  }
  return out;
}

/**
 * Element helpers of the layout: port keys, rule-set keys and shapes, and the sink that turns overlapping
 * interval keys into the disjoint elements the kernel's concatenated interval sets accept. Elements that come
 * from a security-group rule are commented with the rule id.
 */
import { formatInterval, parseInterval } from '../nft/datatypes.js';
import type { DataTypeName, Element, Value } from '../nft/types.js';
import { familyOf, isDefaultRoute } from './addr.js';
import { disjoint, type Box } from './boxes.js';
import type { CompiledRule, PortPolicy } from './ir.js';
import { PORT_PROTOCOLS } from '../model/values.js';
import type { KeyKind, Shape } from './names.js';

/** UDATA comment limit (nft refuses longer): cut at a character boundary within 128 bytes. */
export function clip(text: string): string {
  if (Buffer.byteLength(text) <= 128) return text;
  let out = text.slice(0, 128);
  // Never half a surrogate pair: it has no UTF-8, and the kernel would give back U+FFFD (a comment that
  // never matches again, so every apply rewrites the element).
  while (Buffer.byteLength(out) > 128 || /[\ud800-\udbff]$/.test(out)) out = out.slice(0, -1);
  return out;
}

/** The type of a port key. */
export const KEY_TYPE: Record<KeyKind, DataTypeName> = { dev: 'ifname', tag: 'mark' };

/** The key value of a port for its mode. */
export function portKey(p: PortPolicy): Value {
  return p.mode === 'routed' ? p.device : p.tag!;
}

/** The key kind of a port. */
export function keyKind(p: PortPolicy): KeyKind {
  return p.mode === 'routed' ? 'dev' : 'tag';
}


/** Which rule set a compiled rule's elements go to. */
export function shapeOf(r: CompiledRule): Shape {
  if (r.protocol === undefined) return 'any';
  if (r.ports !== undefined && PORT_PROTOCOLS.has(r.protocol)) return 'ports';
  const icmp = (r.family === 4 && r.protocol === 1) || (r.family === 6 && r.protocol === 58);
  return icmp && r.icmp !== undefined ? 'icmp' : 'proto';
}

/** Elements to collect per set name, with the set's key types. */
export class ElementSink {
  readonly #boxes = new Map<string, { types: DataTypeName[]; boxes: Box<string>[] }>();

  /**
   * Adds one key (values may be ranges or prefixes) labelled with a comment. Keys of different `group`s never
   * overlap (by default the first value, a port key); a group's rule sets pass one group for all.
   */
  add(set: string, types: DataTypeName[], values: Value[], label: string, group = String(values[0])): void {
    let entry = this.#boxes.get(set);
    if (!entry) this.#boxes.set(set, (entry = { types, boxes: [] }));
    entry.boxes.push({ dims: values.map((v, i) => parseInterval(types[i]!, v)), label, group });
  }

  /** Set names that received elements. */
  names(): string[] {
    return [...this.#boxes.keys()];
  }

  /** The elements of a set: overlaps removed, sorted by key, commented with their label. */
  elements(set: string): Element[] {
    const entry = this.#boxes.get(set);
    if (!entry) return [];
    const byLabel = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
    const boxes = disjoint(entry.boxes, byLabel).sort((a, b) => {
      for (let i = 0; i < a.dims.length; i++) {
        const x = a.dims[i]!, y = b.dims[i]!;
        if (x.lo !== y.lo) return x.lo < y.lo ? -1 : 1;
        if (x.hi !== y.hi) return x.hi < y.hi ? -1 : 1;
      }
      return 0;
    });
    return boxes.map((b) => ({ key: b.dims.map((d, i) => formatInterval(entry.types[i]!, d)), comment: clip(b.label) }));
  }
}

/**
 * Addresses of a port, per family: what it may send from (fixed IPs, address pairs, its MACs' link-local
 * addresses), without /0 pairs and the DHCP-discover source, which name no port.
 */
export function portAddresses(p: PortPolicy, family: 4 | 6): string[] {
  const out = new Set<string>();
  for (const ip of p.fixedIps) if (familyOf(ip) === family) out.add(ip);
  for (const s of p.spoof) {
    if (s.family === family && !isDefaultRoute(s.prefix) && s.prefix !== '0.0.0.0/32') out.add(s.prefix);
  }
  return [...out];
}

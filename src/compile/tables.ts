/**
 * A small builder for the desired content of one portwall table: chains, sets with their elements, and rules
 * in order. It only collects; docs/dataplane.md's layout is decided in `./layout.ts`.
 */
import { rule, type Part, type SetRef } from '../nft/match.js';
import type { Chain, ChainType, DataTypeName, Element, Family, Hook, NftObject, NftSet, Rule, TypeofKey } from '../nft/types.js';

/** Options of a set. */
export interface SetOptions {
  interval?: boolean;
  counter?: boolean;
  data?: DataTypeName;
  /** The key's expression, for maps of `ct_zone` data (NftSet.typeof). */
  typeof?: TypeofKey;
  comment?: string;
  /**
   * Where the set goes among the table's sets (default `'middle'`): `'first'` for sets every port change
   * touches, `'middle'` for the rest of the skeleton's fixed sets and the remote groups' member host sets,
   * `'last'` for the other per-network and per-group sets, `'rare'` after those for the per-network and
   * per-group sets of address-pair prefixes (few ports have any). The kernel finds the set of an element operation by
   * walking the table's sets in creation order, so at thousands of sets the order is most of a one-port commit
   * (docs/dataplane.md, "Set order").
   */
  order?: SetOrder;
}

/** A set's place among its table's sets; see {@link SetOptions.order}. */
export type SetOrder = 'first' | 'middle' | 'last' | 'rare';
const ORDER_RANK: Record<SetOrder, number> = { first: 0, middle: 1, last: 2, rare: 3 };

/** Collects one table's chains, sets, elements and rules; {@link TableBuilder.objects} returns them. */
export class TableBuilder {
  readonly #chains: Chain[] = [];
  readonly #sets = new Map<string, NftSet>();
  readonly #order = new Map<string, SetOrder>();
  readonly #elements = new Map<string, Element[]>();
  readonly #rules = new Map<string, Rule[]>();

  constructor(
    readonly family: Family,
    readonly name: string,
  ) {}

  /** Declares a chain; base chains are filter chains (or `type`) with policy accept (portwall only ever drops). */
  chain(name: string, base?: { hook: Hook; priority: number; type?: ChainType }): string {
    const c: Chain = { kind: 'chain', family: this.family, table: this.name, name };
    if (base) Object.assign(c, { hook: base.hook, priority: base.priority, type: base.type ?? 'filter', policy: 'accept' });
    this.#chains.push(c);
    this.#rules.set(name, []);
    return name;
  }

  /** Declares a set (or a data map) and returns a reference for rule builders. */
  set(name: string, key: DataTypeName[], opts: SetOptions = {}): SetRef {
    const s: NftSet = { kind: 'set', family: this.family, table: this.name, name, key };
    if (opts.data !== undefined) s.data = opts.data;
    if (opts.typeof !== undefined) s.typeof = opts.typeof;
    if (opts.interval) s.flags = ['interval'];
    if (opts.counter) s.counter = true;
    if (opts.comment !== undefined) s.comment = opts.comment;
    this.#sets.set(name, s);
    this.#order.set(name, opts.order ?? 'middle');
    return s;
  }

  /** Whether a chain was declared. */
  hasChain(name: string): boolean {
    return this.#rules.has(name);
  }

  /** Whether a set was declared. */
  hasSet(name: string): boolean {
    return this.#sets.has(name);
  }

  /** Sets the elements of a declared set. */
  fill(name: string, elements: Element[]): void {
    if (!this.#sets.has(name)) throw new Error(`elements for undeclared set ${name}`);
    this.#elements.set(name, elements);
  }

  /** Appends a rule to a declared chain. */
  rule(chain: string, parts: Part[], comment?: string): void {
    const list = this.#rules.get(chain);
    if (!list) throw new Error(`rule for undeclared chain ${chain}`);
    const r: Rule = { kind: 'rule', family: this.family, table: this.name, chain, exprs: rule(this.family, parts) };
    if (comment !== undefined) r.comment = comment;
    list.push(r);
  }

  /**
   * The table's objects: table, chains, sets (by {@link SetOptions.order}, then as declared), non-empty element
   * lists, rules. Base chains without rules are left out (a hook that does nothing still costs every packet a
   * call).
   */
  objects(): NftObject[] {
    const chains = this.#chains.filter((c) => c.hook === undefined || this.#rules.get(c.name)!.length > 0);
    const rank = (s: NftSet) => ORDER_RANK[this.#order.get(s.name)!];
    const sets = [...this.#sets.values()].sort((a, b) => rank(a) - rank(b)); // stable: declaration order within a rank
    const out: NftObject[] = [{ kind: 'table', family: this.family, name: this.name }, ...chains, ...sets];
    for (const [set, elements] of this.#elements) {
      if (elements.length > 0) out.push({ kind: 'elements', family: this.family, table: this.name, set, elements });
    }
    for (const c of chains) out.push(...this.#rules.get(c.name)!);
    return out;
  }
}

/**
 * A short, human-readable account of a batch: one line per run of operations on the same object, with the
 * number of elements or rules, e.g. `delete element inet portwall ports_dev (2)`.
 */
import type { Operation } from '../nft/types.js';

const KIND_WORD = { table: 'table', chain: 'chain', set: 'set', elements: 'element', rule: 'rule' } as const;

function target(op: Operation): string {
  const o = op.object;
  switch (o.kind) {
    case 'table':
      return `${o.family} ${o.name}`;
    case 'chain':
      return `${o.family} ${o.table} ${o.name}`;
    case 'set':
      return `${o.family} ${o.table} ${o.name}`;
    case 'elements':
      return `${o.family} ${o.table} ${o.set}`;
    case 'rule':
      return `${o.family} ${o.table} ${o.chain}`;
  }
}

/** One line per run of same-verb operations on one object (counts of elements and rules in parentheses). */
export function summarize(ops: readonly Operation[]): string {
  const lines: { head: string; n: number; counted: boolean }[] = [];
  for (const op of ops) {
    const head = `${op.verb} ${KIND_WORD[op.object.kind]} ${target(op)}`;
    const n = op.object.kind === 'elements' ? op.object.elements.length : 1;
    const counted = op.object.kind === 'elements' || op.object.kind === 'rule';
    const last = lines[lines.length - 1];
    if (last && last.head === head && counted) last.n += n;
    else lines.push({ head, n, counted });
  }
  return lines.map((l) => (l.counted ? `${l.head} (${l.n})` : l.head)).join('\n');
}

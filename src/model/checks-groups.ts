/**
 * Security groups: unique group ids, rule ids unique across all groups, rules checked one by one
 * (`./checks-rules.ts`), remote groups that exist, and no rule twice in one group (Neutron refuses a rule
 * that equals an existing one; after normalisation "equal" includes every other spelling of it).
 */
import { checkRule } from './checks-rules.js';
import { elements, stringField, type CheckContext } from './context.js';
import { elementPath, show } from './problems.js';
import { textProblem } from './values.js';
import type { RuleInput, SecurityGroupInput } from './schema.js';
import { CLOUDSTACK_GROUP, type SecurityGroup, type SgRule } from './types.js';

/** The groups of a state and what ports need to check against them. */
export interface GroupIndex {
  groups: Map<string, SecurityGroup>;
  /** Every string group id in the file, including those of objects that failed the schema. */
  ids: { has(id: string): boolean };
  /** False when `security_groups` itself is malformed: references to groups cannot be judged then. */
  complete: boolean;
}

/**
 * Checks `security_groups` and returns the valid groups, normalised. `known` are ids of groups defined
 * elsewhere (a handle's state, when one group is checked on its own): remote groups may name them.
 */
export function checkGroups(ctx: CheckContext, raw: unknown, known: Iterable<string> = []): GroupIndex {
  const { problems } = ctx;
  const list = elements(raw);
  const ids = new Set(known);
  const index: GroupIndex = { groups: new Map(), ids, complete: raw === undefined || Array.isArray(raw) };
  // Remote groups may be defined after the rule that names them: collect every id first.
  for (const g of list) {
    const id = stringField(g, 'id');
    if (id !== undefined) ids.add(id);
  }
  // Paths are only built for messages: a valid state with 50k rules should not pay for 50k strings.
  const groupPath = (i: number) => elementPath('', 'security_groups', i, list[i]);
  const rulePath = (i: number, k: number) =>
    elementPath(groupPath(i), 'security_group_rules', k, (list[i] as SecurityGroupInput).security_group_rules![k]);
  const groupAt = new Map<string, number>();
  const ruleAt = new Map<string, [number, number]>();

  list.forEach((element, i) => {
    const pointer = `/security_groups/${i}`;
    if (!ctx.sound(pointer, 'security_group_rules')) return;
    const g = element as SecurityGroupInput;
    let valid = true;

    const sameId = groupAt.get(g.id);
    if (sameId !== undefined) {
      problems.add(`${groupPath(i)}.id`, `duplicate security group id ${show(g.id)}, also ${groupPath(sameId)}`);
      valid = false;
    } else groupAt.set(g.id, i);
    const idText = textProblem(g.id);
    if (idText !== undefined) {
      problems.add(`${groupPath(i)}.id`, idText);
      valid = false;
    }
    if (g.id === CLOUDSTACK_GROUP) {
      problems.add(`${groupPath(i)}.id`, `${show(g.id)} is reserved for the built-in rules of CloudStack-flavour networks`);
      valid = false;
    }

    const rules: SgRule[] = [];
    const shapes = new Map<string, number>();
    elements(g.security_group_rules).forEach((rawRule, k) => {
      if (!ctx.sound(`${pointer}/security_group_rules/${k}`)) {
        valid = false;
        return;
      }
      const r = rawRule as RuleInput;
      const fail = (field: string, message: string) => problems.add(`${rulePath(i, k)}.${field}`, message);

      const sameRuleId = ruleAt.get(r.id);
      if (sameRuleId !== undefined) fail('id', `duplicate rule id ${show(r.id)}, also ${rulePath(...sameRuleId)}`);
      else ruleAt.set(r.id, [i, k]);
      const ruleIdText = textProblem(r.id);
      if (ruleIdText !== undefined) {
        fail('id', ruleIdText);
        valid = false;
      }

      const rule = checkRule(r, g.id, fail);
      if (rule?.remoteGroupId !== undefined && index.complete && !index.ids.has(rule.remoteGroupId)) {
        fail('remote_group_id', `unknown security group ${show(rule.remoteGroupId)}`);
      }
      if (rule === undefined || sameRuleId !== undefined) {
        valid = false;
        return;
      }
      const shape = ruleShape(rule);
      const twin = shapes.get(shape);
      if (twin !== undefined) {
        problems.add(rulePath(i, k), `the same rule as ${rulePath(i, twin)} (Neutron refuses duplicate rules in one group)`);
        valid = false;
      } else shapes.set(shape, k);
      rules.push(rule);
    });

    if (valid) index.groups.set(g.id, { id: g.id, stateful: g.stateful ?? true, rules });
  });
  return index;
}

/** What a canonical rule matches, without its id: equal shapes are one rule. */
function ruleShape(r: SgRule): string {
  // Only the last field (a group id) can hold any character, so "|" cannot make two shapes collide.
  const ports = r.ports === undefined ? '' : `${r.ports.min}-${r.ports.max}`;
  const icmp = r.icmp === undefined ? '' : `${r.icmp.type}/${r.icmp.code ?? ''}`;
  return `${r.direction}|${r.family}|${r.protocol ?? ''}|${ports}|${icmp}|${r.remotePrefix ?? ''}|${r.remoteGroupId ?? ''}`;
}

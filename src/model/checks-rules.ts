/**
 * One security-group rule, with Neutron's semantics: protocol by name or number, port ranges only for
 * protocols with ports, ICMP type/code in `port_range_min/max`, remote prefix or remote group (never both),
 * the prefix in the rule's family. The result is canonical so that two spellings of one rule are equal.
 */
import { show } from './problems.js';
import type { RuleInput } from './schema.js';
import type { IpFamily, SgRule } from './types.js';
import { ICMP_PROTOCOLS, IPV6_ONLY_PROTOCOLS, PORT_PROTOCOLS, parseIpPrefix, parseProtocol } from './values.js';

/** Reports a problem with a field of the rule being checked. */
export type FieldFail = (field: string, message: string) => void;

const PORT_PROTOCOL_NAMES = 'tcp, udp, sctp, udplite, dccp';

/**
 * Checks one rule and returns its canonical form, or undefined when something is wrong (reported through
 * `fail`). `remote_group_id` is only checked for shape here; the caller resolves it against all groups.
 */
export function checkRule(rule: RuleInput, groupId: string, fail: FieldFail): SgRule | undefined {
  let valid = true;
  const problem: FieldFail = (field, message) => {
    fail(field, message);
    valid = false;
  };
  const extra = rule as RuleInput & Record<string, unknown>;
  // Neutron rule objects carry their group; one filed under another group is a mistake, not a move.
  if (extra.security_group_id != null && extra.security_group_id !== groupId) {
    problem('security_group_id', `${show(extra.security_group_id)} is not the enclosing group ${show(groupId)}`);
  }
  // Ignoring an address-group reference would silently widen the rule to "any remote": refuse it.
  if (extra.remote_address_group_id != null) {
    problem('remote_address_group_id', 'remote address groups are not supported; use remote_ip_prefix or remote_group_id');
  }

  const family: IpFamily = rule.ethertype === 'IPv4' ? 4 : 6;
  const proto = parseProtocol(rule.protocol);
  let protocol = proto.value?.number;
  if (proto.problem !== undefined) problem('protocol', proto.problem);
  // Neutron accepts `icmp` in IPv6 rules and means ICMPv6.
  if (protocol === 1 && family === 6) protocol = 58;
  if (protocol !== undefined && family === 4 && IPV6_ONLY_PROTOCOLS.has(protocol)) {
    problem('protocol', `protocol ${show(rule.protocol)} exists only in IPv6, but ethertype is IPv4`);
  }

  const range = proto.problem === undefined ? checkRange(rule, protocol, problem) : {};
  const remote = checkRemote(rule, family, problem);
  if (!valid) return undefined;
  return {
    id: rule.id,
    groupId,
    direction: rule.direction,
    family,
    ...(protocol === undefined ? {} : { protocol }),
    ...range,
    ...remote,
  };
}

/** `ports` or `icmp` of the canonical rule, from `port_range_min/max` read as Neutron reads them. */
function checkRange(rule: RuleInput, protocol: number | undefined, fail: FieldFail): Pick<SgRule, 'ports' | 'icmp'> {
  const min = rule.port_range_min ?? undefined;
  const max = rule.port_range_max ?? undefined;
  if (min === undefined && max === undefined) return {};
  const first = min !== undefined ? 'port_range_min' : 'port_range_max';

  if (protocol === undefined) {
    fail(first, `a port range needs a protocol with ports (${PORT_PROTOCOL_NAMES}) or ICMP; protocol is any`);
    return {};
  }
  if (ICMP_PROTOCOLS.has(protocol)) {
    if (min === undefined) {
      fail('port_range_max', 'an ICMP code (port_range_max) needs an ICMP type (port_range_min)');
      return {};
    }
    const typeOk = within(fail, 'port_range_min', min, 0, 255, 'ICMP type');
    const codeOk = max === undefined || within(fail, 'port_range_max', max, 0, 255, 'ICMP code');
    if (!typeOk || !codeOk) return {};
    return { icmp: max === undefined ? { type: min } : { type: min, code: max } };
  }
  if (!PORT_PROTOCOLS.has(protocol)) {
    fail(first, `protocol ${show(rule.protocol)} has no ports; port ranges apply to ${PORT_PROTOCOL_NAMES} (and ICMP type/code)`);
    return {};
  }
  if (min === undefined) {
    fail('port_range_min', 'is required when port_range_max is set');
    return {};
  }
  // Port 0 is not a port a connection can use; Neutron refuses it too.
  const minOk = within(fail, 'port_range_min', min, 1, 65535, 'port');
  const maxOk = max === undefined || within(fail, 'port_range_max', max, 1, 65535, 'port');
  if (!minOk || !maxOk) return {};
  // A lone port_range_min is one port.
  const hi = max ?? min;
  if (min > hi) {
    fail('port_range_min', `${min} is greater than port_range_max ${hi}`);
    return {};
  }
  // 1-65535 is every usable port: the same rule as no range, so it is spelt as no range.
  return min === 1 && hi === 65535 ? {} : { ports: { min, max: hi } };
}

function within(fail: FieldFail, field: string, value: number, lo: number, hi: number, what: string): boolean {
  if (value >= lo && value <= hi) return true;
  fail(field, `${what} ${value} is outside ${lo}-${hi}`);
  return false;
}

/** `remotePrefix` / `remoteGroupId` of the canonical rule; a /0 prefix is the same as any remote. */
function checkRemote(rule: RuleInput, family: IpFamily, fail: FieldFail): Pick<SgRule, 'remotePrefix' | 'remoteGroupId'> {
  const prefixText = rule.remote_ip_prefix ?? undefined;
  const groupId = rule.remote_group_id ?? undefined;
  if (prefixText !== undefined && groupId !== undefined) {
    fail('remote_group_id', 'remote_ip_prefix and remote_group_id are exclusive; give one of them');
    return {};
  }
  if (groupId !== undefined) return { remoteGroupId: groupId };
  if (prefixText === undefined) return {};
  const parsed = parseIpPrefix(prefixText);
  if (parsed.problem !== undefined) {
    fail('remote_ip_prefix', parsed.problem);
    return {};
  }
  if (parsed.value.family !== family) {
    fail('remote_ip_prefix', `${parsed.value.prefix} is IPv${parsed.value.family}, but ethertype is IPv${family}`);
    return {};
  }
  return parsed.value.length === 0 ? {} : { remotePrefix: parsed.value.prefix };
}

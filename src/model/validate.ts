/**
 * The validate stage (state → Model): a state document is checked against the schema, then against the
 * rules JSON Schema cannot state (docs/requirements.md, "Model"; Neutron's semantics), and normalised. Every problem is collected
 * and reported at once; a state with any problem yields no Model at all, so nothing of it can be applied.
 */
import { checkGroups } from './checks-groups.js';
import { checkFloatingIps, checkNat } from './checks-nat.js';
import { checkNetworks } from './checks-networks.js';
import { checkPorts } from './checks-ports.js';
import { soundness, type CheckContext } from './context.js';
import { InvalidStateError, Problems } from './problems.js';
import { matchesSchema, schemaProblems, type SchemaProblem } from './schema-errors.js';
import { DEFAULT_CONFIG, type Model, type PortwallConfig } from './types.js';

/** Options of {@link validateState}. */
export interface ValidateOptions {
  /** Names the document in the error message (a file path, "stdin", an API request). */
  source?: string;
}

/**
 * Validates a parsed state document and returns the normalised {@link Model}.
 *
 * @param input - the document, e.g. `JSON.parse` of a state file (any value is accepted and judged).
 * @param config - zones must lie in `config.zoneRange`.
 * @throws {@link InvalidStateError} (a PortwallError, code `ERR_INVALID_STATE`) listing every problem in
 *   `problems` as `{ path, message }`, with `field` set to the first problem's path.
 */
export function validateState(input: unknown, config: PortwallConfig = DEFAULT_CONFIG, options: ValidateOptions = {}): Model {
  const problems = new Problems();
  let found: SchemaProblem[] = [];
  if (!matchesSchema(input)) {
    found = schemaProblems(input);
    for (const p of found) problems.add(p.path, p.message);
    // Without an object holding a networks array there is nothing the semantic checks could stand on.
    const root = input as Record<string, unknown> | null;
    if (typeof input !== 'object' || input === null || Array.isArray(input) || !Array.isArray(root?.networks)) {
      throw new InvalidStateError(problems.list, options.source);
    }
  }

  const ctx: CheckContext = { problems, config, sound: soundness(found) };
  const doc = input as Record<string, unknown>;
  const nets = checkNetworks(ctx, doc.networks);
  const groups = checkGroups(ctx, doc.security_groups);
  const ports = checkPorts(ctx, doc.ports, nets, groups);
  const floatingIps = checkFloatingIps(ctx, doc.floatingips, ports);
  const nat = checkNat(ctx, doc.nat);

  if (!problems.empty) throw new InvalidStateError(problems.list, options.source);
  const model: Model = { networks: nets.networks, groups: groups.groups, ports };
  if (doc.floatingips !== undefined) model.floatingIps = floatingIps;
  if (nat) model.nat = nat;
  return model;
}

/**
 * Problems found in a state file, each naming the object and field the way a person finds it in the file:
 * `ports[3] (tap6e3f2eda-32).allowed_address_pairs[0].ip_address` — the array index, then the object's
 * device (ports) or id (networks, security groups, rules) in parentheses. Validation collects every problem
 * and throws them together as one {@link InvalidStateError}.
 */
import { PortwallError } from '../errors.js';

/** One thing wrong with a state file. */
export interface Problem {
  /** Where, e.g. `security_groups[0] (sg-web).security_group_rules[1] (r2).port_range_min`. */
  path: string;
  /** What is wrong, e.g. `not an IP prefix: "192.0.2.300"`. */
  message: string;
}

/** The path used when the document itself (not one of its fields) is wrong. */
export const ROOT_PATH = '(root)';

/** Thrown by validation: code `ERR_INVALID_STATE`, `field` = the first problem's path, all in `problems`. */
export class InvalidStateError extends PortwallError {
  readonly problems: readonly Problem[];
  /**
   * Keys of the same document the schema does not know (`./unknown-keys.ts`), set by the loaders so that a
   * misspelt field is named beside the error it caused (e.g. a required field "missing").
   */
  warnings: readonly Problem[] = [];

  constructor(problems: readonly Problem[], source?: string) {
    const head = `${source ?? 'state'}: ${problems.length} problem${problems.length === 1 ? '' : 's'}`;
    const lines = problems.map((p) => `  ${p.path}: ${p.message}`);
    super('ERR_INVALID_STATE', [head, ...lines].join('\n'), { field: problems[0]?.path });
    this.problems = problems;
  }
}

/**
 * Most problems one error lists. A state of 100 000 copies of one group has millions of problems; listing
 * them all made an error (and an API answer) of hundreds of megabytes and ran a process out of memory.
 */
export const MAX_PROBLEMS = 1000;

/** Collects problems in the order they are found: the first {@link MAX_PROBLEMS}, and how many more. */
export class Problems {
  readonly #kept: Problem[] = [];
  #count = 0;
  #firstUnlisted = '';

  add(path: string, message: string): void {
    if (this.#count++ < MAX_PROBLEMS) this.#kept.push({ path, message });
    else if (this.#count === MAX_PROBLEMS + 1) this.#firstUnlisted = path;
  }

  /** Every problem found, listed or not. */
  get count(): number {
    return this.#count;
  }

  get empty(): boolean {
    return this.#count === 0;
  }

  /** The problems; past {@link MAX_PROBLEMS}, a last one at the first unlisted problem's path says how many more. */
  get list(): Problem[] {
    const more = this.#count - MAX_PROBLEMS;
    if (more <= 0) return this.#kept;
    return [...this.#kept, { path: this.#firstUnlisted, message: `and ${more} more problem${more === 1 ? '' : 's'} from here on, not listed (at most ${MAX_PROBLEMS} are)` }];
  }
}

// Top-level arrays whose elements are labelled, and the field that labels them.
const LABEL_FIELD: Readonly<Record<string, string>> = {
  networks: 'id',
  security_groups: 'id',
  security_group_rules: 'id',
  ports: 'device',
  floatingips: 'id',
};

/** `ports[3] (tap6e3f2eda-32)`: an array element with its label when the label field is a string. */
export function elementPath(parent: string, array: string, index: number, element: unknown): string {
  const base = `${parent === '' ? '' : `${parent}.`}${array}[${index}]`;
  const labelField = LABEL_FIELD[array];
  if (labelField === undefined || typeof element !== 'object' || element === null) return base;
  const label = (element as Record<string, unknown>)[labelField];
  return typeof label === 'string' && label !== '' ? `${base} (${showLabel(label)})` : base;
}

/**
 * Turns a JSON Pointer into a labelled path, reading labels from `root`: `/ports/0/device` →
 * `ports[0] (tap1).device`.
 */
export function pointerToPath(root: unknown, pointer: string): string {
  if (pointer === '') return ROOT_PATH;
  const segments = pointer.slice(1).split('/').map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'));
  let path = '';
  let node: unknown = root;
  for (let i = 0; i < segments.length; i++) {
    const key = segments[i]!;
    const next = segments[i + 1];
    const container = node as Record<string, unknown> | undefined;
    const child = container?.[key];
    if (next !== undefined && /^(?:0|[1-9][0-9]*)$/.test(next) && Array.isArray(child)) {
      const element = child[Number(next)];
      path = elementPath(path, key, Number(next), element);
      node = element;
      i++;
    } else {
      path = path === '' ? key : /^(?:0|[1-9][0-9]*)$/.test(key) ? `${path}[${key}]` : `${path}.${key}`;
      node = child;
    }
  }
  return path;
}

/** A value as a message shows it: JSON, cut short so a huge value cannot flood the message. */
export function show(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

// Labels print bare when they are plain printable ASCII; anything else is quoted so the path stays readable.
function showLabel(label: string): string {
  return /^[\x21-\x7e]{1,64}$/.test(label) && !/[()]/.test(label) ? label : show(label);
}

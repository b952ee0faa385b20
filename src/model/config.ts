/**
 * portwall's configuration as a JSON file (`portwall --config FILE`, the agent's too): the same keys as
 * {@link PortwallConfig}, each optional (defaults from {@link DEFAULT_CONFIG}):
 *
 * ```json
 * { "tables": { "inet": "portwall", "bridge": "portwall", "nat": "portwall_nat" },
 *   "markMask": "0xffff", "zoneRange": { "min": 1, "max": 65535 }, "publishIpsets": false, "logGroup": 28791 }
 * ```
 *
 * Every problem is named by its key path, all at once (`ERR_INVALID_CONFIG`); a key the file does not know is
 * a problem too, since a misspelt `tables` would otherwise leave portwall writing to tables nobody expects.
 */
import { readFile } from 'node:fs/promises';

import { markBits } from '../compile/policy.js';
import { PortwallError } from '../errors.js';
import { NFT_NAME_MAXLEN } from '../nft/constants.js';
import { findJsonSyntaxError } from './json-syntax.js';
import { Problems, ROOT_PATH, type Problem } from './problems.js';
import { DEFAULT_CONFIG, type PortwallConfig } from './types.js';

// nft's unquoted identifiers (what `plan` prints and `nft -f` reads back).
const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
const KEYS = ['tables', 'markMask', 'zoneRange', 'publishIpsets', 'logGroup'] as const;
const TABLE_KEYS = ['inet', 'bridge', 'nat'] as const;
// The names portwall gives tables of its own after a configured one: the inet table's raw and trace tables,
// the bridge table's trace table (`explain --live` on a bridged port).
const SUFFIXES: Partial<Record<(typeof TABLE_KEYS)[number], readonly string[]>> = { inet: ['_raw', '_trace'], bridge: ['_trace'] };

/** Thrown for an invalid configuration: code `ERR_INVALID_CONFIG`, every problem in `problems`. */
export class InvalidConfigError extends PortwallError {
  readonly problems: readonly Problem[];

  constructor(problems: readonly Problem[], source = 'config') {
    const head = `${source}: ${problems.length} problem${problems.length === 1 ? '' : 's'}`;
    super('ERR_INVALID_CONFIG', [head, ...problems.map((p) => `  ${p.path}: ${p.message}`)].join('\n'), { field: problems[0]?.path });
    this.problems = problems;
  }
}

/** The longest name table `k` may have, so that the tables named after it fit too. */
function roomFor(k: (typeof TABLE_KEYS)[number]): number {
  return NFT_NAME_MAXLEN - Math.max(0, ...(SUFFIXES[k] ?? []).map((x) => x.length));
}

/** Validates a configuration document and fills in the defaults; throws {@link InvalidConfigError}. */
export function parseConfig(doc: unknown, source = 'config'): PortwallConfig {
  const problems = new Problems();
  const config: PortwallConfig = { ...DEFAULT_CONFIG, tables: { ...DEFAULT_CONFIG.tables }, zoneRange: { ...DEFAULT_CONFIG.zoneRange } };
  if (!isObject(doc)) throw new InvalidConfigError([{ path: ROOT_PATH, message: 'must be a JSON object' }], source);
  unknown(problems, '', doc, KEYS);

  if (doc.tables !== undefined) {
    if (!isObject(doc.tables)) problems.add('tables', 'must be an object with inet, bridge and nat');
    else {
      unknown(problems, 'tables.', doc.tables, TABLE_KEYS);
      for (const k of TABLE_KEYS) {
        const v = doc.tables[k];
        if (v === undefined) continue;
        if (typeof v !== 'string' || !TABLE_NAME.test(v)) problems.add(`tables.${k}`, `not a table name (letters, digits, _ . -): ${JSON.stringify(v)}`);
        else if (Buffer.byteLength(v) > roomFor(k)) {
          const after = (SUFFIXES[k] ?? []).map((x) => JSON.stringify(x)).join(' and ');
          problems.add(`tables.${k}`, `longer than ${roomFor(k)} bytes${after ? ` (portwall also names tables after it with ${after})` : ''}`);
        } else config.tables[k] = v;
      }
    }
  }

  if (doc.markMask !== undefined) {
    const mask = typeof doc.markMask === 'string' && /^0x[0-9a-f]{1,8}$/i.test(doc.markMask) ? Number(doc.markMask) : doc.markMask;
    if (typeof mask !== 'number' || !Number.isInteger(mask) || mask <= 0 || mask > 0xffffffff) {
      problems.add('markMask', `must be a 32-bit mask, a number or a "0x…" string: ${JSON.stringify(doc.markMask)}`);
    } else {
      try {
        markBits(mask);
        config.markMask = mask;
      } catch (e) {
        problems.add('markMask', (e as Error).message);
      }
    }
  }

  if (doc.zoneRange !== undefined) {
    if (!isObject(doc.zoneRange)) problems.add('zoneRange', 'must be an object with min and max');
    else {
      unknown(problems, 'zoneRange.', doc.zoneRange, ['min', 'max']);
      for (const k of ['min', 'max'] as const) {
        const v = doc.zoneRange[k];
        if (v === undefined) continue;
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) problems.add(`zoneRange.${k}`, `must be a conntrack zone, 1 to 65535: ${JSON.stringify(v)}`);
        else config.zoneRange[k] = v;
      }
      if (config.zoneRange.min > config.zoneRange.max) problems.add('zoneRange', `min ${config.zoneRange.min} is above max ${config.zoneRange.max}`);
    }
  }

  if (doc.publishIpsets !== undefined) {
    if (typeof doc.publishIpsets !== 'boolean') problems.add('publishIpsets', `must be true or false: ${JSON.stringify(doc.publishIpsets)}`);
    else config.publishIpsets = doc.publishIpsets;
  }

  if (doc.logGroup !== undefined) {
    const g = doc.logGroup;
    if (typeof g !== 'number' || !Number.isInteger(g) || g < 0 || g > 65535) problems.add('logGroup', `must be an NFLOG group, 0 to 65535: ${JSON.stringify(g)}`);
    else config.logGroup = g;
  }

  if (!problems.empty) throw new InvalidConfigError(problems.list, source);
  return config;
}

/** Reads and validates a configuration file (JSON). An unreadable file is `ERR_SYSTEM` with its errno. */
export async function readConfigFile(path: string): Promise<PortwallConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new PortwallError('ERR_SYSTEM', `cannot read config file ${path}: ${err.message}`, {
      cause: e,
      ...(typeof err.errno === 'number' ? { errno: Math.abs(err.errno) } : {}),
      ...(err.code === undefined ? {} : { errnoName: err.code }),
    });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    const at = findJsonSyntaxError(text);
    const message = at === undefined
      ? `not valid JSON: ${(e as Error).message}`
      : `not valid JSON at line ${at.line}, column ${at.column}: ${at.message}`;
    throw new InvalidConfigError([{ path: ROOT_PATH, message }], path);
  }
  return parseConfig(doc, path);
}

function unknown(problems: Problems, prefix: string, obj: Record<string, unknown>, known: readonly string[]): void {
  for (const k of Object.keys(obj)) {
    if (!known.includes(k)) problems.add(`${prefix}${k}`, `unknown key (known: ${known.join(', ')})`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The API's routes: a request path matched to a route template (the metrics' `route` label, so label values
 * stay bounded) and what it targets. Path ids are percent-decoded; nothing else of the path is normalised.
 */

/** The item collections of the API and the op kind each one carries. */
export const COLLECTIONS = {
  ports: 'port',
  'security-groups': 'group',
  floatingips: 'floatingip',
} as const;

/** An op kind addressed by id. */
export type ItemKind = (typeof COLLECTIONS)[keyof typeof COLLECTIONS];

/** What a matched path addresses. */
export type RouteTarget =
  | { kind: 'status' }
  | { kind: 'state' }
  | { kind: 'metrics' }
  | { kind: 'explain' }
  | { kind: 'item'; item: ItemKind; id: string };

/** A matched path: its template, the methods it answers, its target. */
export interface RouteMatch {
  /** e.g. `/v1/ports/{id}`. */
  template: string;
  methods: readonly string[];
  target: RouteTarget;
}

/** The `route` label of requests that matched no route. */
export const UNMATCHED_ROUTE = 'unmatched';

/** Every route template with its methods, in the order the docs list them. */
export const ROUTES: readonly { template: string; methods: readonly string[] }[] = [
  { template: '/v1/status', methods: ['GET'] },
  { template: '/v1/state', methods: ['PUT'] },
  { template: '/v1/explain', methods: ['GET'] },
  ...Object.keys(COLLECTIONS).map((c) => ({ template: `/v1/${c}/{id}`, methods: ['PUT', 'DELETE'] })),
  { template: '/metrics', methods: ['GET'] },
];

/** A path whose id is not valid percent-encoding. */
export class BadPathError extends Error {
  constructor(
    /** The template of the route the path matched otherwise. */
    readonly template: string,
    readonly segment: string,
  ) {
    super(`the path segment ${JSON.stringify(segment)} is not valid percent-encoding`);
    this.name = 'BadPathError';
  }
}

/**
 * Matches a request target (path and optional query) to a route, or undefined.
 *
 * @throws BadPathError when the id segment is not valid percent-encoding.
 */
export function matchRoute(url: string): RouteMatch | undefined {
  const pathname = url.split('?', 1)[0]!;
  if (pathname === '/v1/status') return fixed(pathname, 'GET', { kind: 'status' });
  if (pathname === '/v1/state') return fixed(pathname, 'PUT', { kind: 'state' });
  if (pathname === '/metrics') return fixed(pathname, 'GET', { kind: 'metrics' });
  if (pathname === '/v1/explain') return fixed(pathname, 'GET', { kind: 'explain' });
  const m = /^\/v1\/([a-z-]+)\/([^/]+)$/.exec(pathname);
  if (m === null || !Object.hasOwn(COLLECTIONS, m[1]!)) return undefined;
  const collection = m[1] as keyof typeof COLLECTIONS;
  const template = `/v1/${collection}/{id}`;
  return {
    template,
    methods: ['PUT', 'DELETE'],
    target: { kind: 'item', item: COLLECTIONS[collection], id: decodeSegment(template, m[2]!) },
  };
}

function fixed(template: string, method: string, target: RouteTarget): RouteMatch {
  return { template, methods: [method], target };
}

function decodeSegment(template: string, segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new BadPathError(template, segment);
  }
}

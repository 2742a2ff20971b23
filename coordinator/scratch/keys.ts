import type { Etcd3 } from 'etcd3';

/** Keys asked of etcd per request without values: memory holds one page (~1 MiB), whatever the keyspace's size. */
export const PAGE_SIZE = 10_000;

export interface KeyEntry {
  key: Buffer;
  /** Only when values were asked for. */
  value?: Buffer;
  modRevision: number;
}

/**
 * Every key from `prefix` (all keys when empty) in etcd's byte order, page by page, at one
 * revision (0: the latest, then pinned to the first page's so that the pages agree).
 */
export async function* pageKeys(
  client: Etcd3,
  opts: { prefix?: Buffer; values?: boolean; revision?: number; pageSize?: number; signal?: AbortSignal } = {},
): AsyncGenerator<KeyEntry> {
  const prefix = opts.prefix ?? Buffer.alloc(0);
  const end = prefix.length ? prefixEnd(prefix) : Buffer.from([0]);
  let start = prefix.length ? prefix : Buffer.from([0]);
  let revision = opts.revision ?? 0;
  for (;;) {
    opts.signal?.throwIfAborted();
    const res = await client.kv.range({
      key: start,
      range_end: end,
      limit: opts.pageSize ?? PAGE_SIZE,
      revision,
      keys_only: !opts.values,
    });
    revision = Number(res.header.revision);
    for (const kv of res.kvs) yield { key: kv.key, ...(opts.values ? { value: kv.value } : {}), modRevision: Number(kv.mod_revision) };
    if (!res.more || res.kvs.length === 0) return;
    start = Buffer.concat([res.kvs[res.kvs.length - 1]!.key, Buffer.from([0])]);
  }
}

/** The first key after every key that starts with `prefix` (etcd's range_end for a prefix). */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

export interface ParsedKey {
  /** The resource as the apiserver stores it: `configmaps`, `deployments`, `services/specs`, `apiregistration.k8s.io/apiservices`; `(other)` outside /registry/. */
  resource: string;
  /** The namespace of a namespaced object; undefined for a cluster-scoped one (and for namespaces themselves). */
  namespace?: string;
  name: string;
}

/**
 * What a Kubernetes key names. The apiserver stores objects at /registry/<resource>/<ns>/<name>, or
 * /registry/<resource>/<name> when cluster-scoped; resources of an API group other than the core
 * and its historical ones sit under their group (a segment with a dot: namespace names have none);
 * services and their endpoints are under /registry/services/specs and /registry/services/endpoints.
 */
export function parseKey(key: string): ParsedKey {
  const parts = key.split('/');
  if (parts[0] !== '' || parts[1] !== 'registry' || parts.length < 4) return { resource: '(other)', name: key };
  let rest = parts.slice(2);
  let resource = rest.shift()!;
  if ((resource.includes('.') || resource === 'services') && rest.length >= 2) resource = `${resource}/${rest.shift()!}`;
  if (rest.length === 1) return { resource, name: rest[0]! };
  const namespace = rest.shift()!;
  rest = [rest.join('/')];
  return { resource, namespace, name: rest[0]! };
}

/** The resource name an operator uses for a stored resource (`endpoints` for services/endpoints). */
export function resourceName(stored: string): string {
  if (stored === 'services/specs') return 'services';
  if (stored === 'services/endpoints') return 'endpoints';
  return stored;
}

export interface KeySummary {
  revision: number;
  keyCount: number;
  byResource: Record<string, number>;
  byNamespace: Record<string, number>;
  /** Namespaces that hold objects but have no /registry/namespaces/<ns> object. */
  namespacesWithoutObject: string[];
  namespaces: number;
}

/** Where the apiserver keeps its objects; every other key is reported as `(other)`. */
const REGISTRY = Buffer.from('/registry/');

/**
 * Above this many stored bytes per key (the db's size over the keys under /registry/, history
 * included), the keys are walked group by group (walkGroups) instead of listed: etcd reads the
 * value of every key a range returns, keys_only too, and large values make the listing cost a pass
 * over them; small ones make the groups many, each a round trip.
 */
const GROUP_WALK_MIN_BYTES_PER_KEY = 32 << 10;

/** The counts a summary is made of. */
class Tally {
  keyCount = 0;
  readonly byResource = new Map<string, number>();
  readonly byNamespace = new Map<string, number>();
  readonly namespaceObjects = new Set<string>();

  add(k: ParsedKey, n = 1): void {
    this.keyCount += n;
    this.byResource.set(k.resource, (this.byResource.get(k.resource) ?? 0) + n);
    if (k.namespace !== undefined) this.byNamespace.set(k.namespace, (this.byNamespace.get(k.namespace) ?? 0) + n);
    if (k.resource === 'namespaces' && k.namespace === undefined) this.namespaceObjects.add(k.name);
  }
}

/**
 * Counts the keys of a whole keyspace by resource and namespace at one revision. Keys outside
 * /registry/ are counted, not listed: they are only ever reported as `(other)`, and etcd reads the
 * value of every key a range returns (keys_only too), not of those it counts.
 */
export async function summarizeKeys(
  client: Etcd3,
  signal?: AbortSignal,
  /** How the keys under /registry/ are read: chosen by the db's shape, or one way (tests prove both give the same). */
  walk: 'auto' | 'list' | 'groups' = 'auto',
): Promise<KeySummary> {
  const status = await client.maintenance.status();
  const revision = Number(status.header.revision);
  const [before, registry, after] = await Promise.all([
    countKeys(client, Buffer.from([0]), REGISTRY, revision),
    countKeys(client, REGISTRY, prefixEnd(REGISTRY), revision),
    countKeys(client, prefixEnd(REGISTRY), Buffer.from([0]), revision),
  ]);
  const tally = new Tally();
  const large = registry > 0 && Number(status.dbSize) / registry >= GROUP_WALK_MIN_BYTES_PER_KEY;
  if (walk === 'groups' || (walk === 'auto' && large)) await walkGroups(client, tally, revision, signal);
  else for await (const e of pageKeys(client, { prefix: REGISTRY, revision, signal })) tally.add(parseKey(e.key.toString('latin1')));
  if (before + after) tally.add({ resource: '(other)', name: '' }, before + after);
  const byNamespace = tally.byNamespace;
  return {
    revision,
    keyCount: tally.keyCount,
    byResource: Object.fromEntries([...tally.byResource].sort(([a], [b]) => a.localeCompare(b))),
    byNamespace: Object.fromEntries([...byNamespace].sort(([a], [b]) => a.localeCompare(b))),
    namespacesWithoutObject: [...byNamespace.keys()].filter((ns) => !tally.namespaceObjects.has(ns)).sort(),
    namespaces: tally.namespaceObjects.size,
  };
}

/**
 * The keys under /registry/ without reading most values: the first key of what is left is read
 * (one value); when it lies in a namespace, every key under its `/registry/<resource>/<ns>/`
 * belongs to that resource and namespace (parseKey), so they are counted, not read, and the walk
 * goes on after them; a cluster-scoped key is read with the rest of its resource, a page at a
 * time, and tallied one by one. The counts are a full listing's, whatever the keys.
 */
async function walkGroups(client: Etcd3, tally: Tally, revision: number, signal?: AbortSignal): Promise<void> {
  const end = prefixEnd(REGISTRY);
  let start: Buffer = REGISTRY;
  for (;;) {
    signal?.throwIfAborted();
    const first = (await client.kv.range({ key: start, range_end: end, limit: 1, revision, keys_only: true })).kvs[0];
    if (!first) return;
    const key = first.key.toString('latin1');
    const k = parseKey(key);
    if (k.namespace !== undefined) {
      const group = Buffer.from(`/registry/${k.resource}/${k.namespace}/`, 'latin1');
      tally.add(k, await countKeys(client, group, prefixEnd(group), revision));
      start = prefixEnd(group);
      continue;
    }
    // Cluster-scoped: the rest of its resource's keys, a page (any namespaced one among them is tallied as it is).
    const resource = Buffer.from(`/registry/${k.resource}/`, 'latin1');
    const page = await client.kv.range({ key: first.key, range_end: prefixEnd(resource), limit: PAGE_SIZE, revision, keys_only: true });
    // A key parseKey finds no resource in (`/registry/x`) may sort past that prefix: it is tallied alone.
    const keys = page.kvs.length ? page.kvs.map((kv) => kv.key) : [first.key];
    for (const b of keys) tally.add(parseKey(b.toString('latin1')));
    start = Buffer.concat([keys[keys.length - 1]!, Buffer.from([0])]);
  }
}

/** How many keys are in [start, end) at `revision`, without reading them. */
async function countKeys(client: Etcd3, start: Buffer, end: Buffer, revision: number): Promise<number> {
  const res = await client.kv.range({ key: start, range_end: end, revision, count_only: true });
  return Number(res.count);
}

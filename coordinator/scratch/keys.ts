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
 * Counts the keys of a whole keyspace by resource and namespace, one page at a time, at one
 * revision. Keys outside /registry/ are counted, not listed: they are only ever reported as
 * `(other)`, and etcd reads the value of every key a range returns (keys_only too), not of those it counts.
 */
export async function summarizeKeys(client: Etcd3, signal?: AbortSignal): Promise<KeySummary> {
  const byResource = new Map<string, number>();
  const byNamespace = new Map<string, number>();
  const namespaceObjects = new Set<string>();
  const status = await client.maintenance.status();
  const revision = Number(status.header.revision);
  const outside = Promise.all([
    countKeys(client, Buffer.from([0]), REGISTRY, revision),
    countKeys(client, prefixEnd(REGISTRY), Buffer.from([0]), revision),
  ]);
  // Reported where it is awaited, after the pages.
  outside.catch(() => undefined);
  let keyCount = 0;
  for await (const e of pageKeys(client, { prefix: REGISTRY, revision, signal })) {
    keyCount++;
    const k = parseKey(e.key.toString('latin1'));
    byResource.set(k.resource, (byResource.get(k.resource) ?? 0) + 1);
    if (k.namespace !== undefined) byNamespace.set(k.namespace, (byNamespace.get(k.namespace) ?? 0) + 1);
    if (k.resource === 'namespaces' && k.namespace === undefined) namespaceObjects.add(k.name);
  }
  const other = (await outside).reduce((a, b) => a + b, 0);
  keyCount += other;
  if (other) byResource.set('(other)', (byResource.get('(other)') ?? 0) + other);
  return {
    revision,
    keyCount,
    byResource: Object.fromEntries([...byResource].sort(([a], [b]) => a.localeCompare(b))),
    byNamespace: Object.fromEntries([...byNamespace].sort(([a], [b]) => a.localeCompare(b))),
    namespacesWithoutObject: [...byNamespace.keys()].filter((ns) => !namespaceObjects.has(ns)).sort(),
    namespaces: namespaceObjects.size,
  };
}

/** How many keys are in [start, end) at `revision`, without reading them. */
async function countKeys(client: Etcd3, start: Buffer, end: Buffer, revision: number): Promise<number> {
  const res = await client.kv.range({ key: start, range_end: end, revision, count_only: true });
  return Number(res.count);
}

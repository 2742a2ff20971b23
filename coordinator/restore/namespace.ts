import type { Etcd3 } from 'etcd3';
import { errorMessage } from '../../shared/errors.js';
import { pageKeys, parseKey, resourceName } from '../scratch/keys.js';
import { hasOwnerReferences } from './owner.js';

/**
 * What controllers recreate or what would be stale, left out unless --resource names them (as
 * Velero does): events, endpoints and endpoint slices, leases; pods owned by a controller too.
 */
export const EXCLUDED_BY_DEFAULT = ['events', 'endpoints', 'endpointslices', 'leases'];

export interface NamespaceItem {
  key: Buffer;
  resource: string;
  name: string;
  action: 'create' | 'exists' | 'left-out';
  reason?: string;
}

/** An operator's resource name for a stored one: the plural, without its API group. */
export function shortResource(stored: string): string {
  const name = resourceName(stored);
  return name.includes('/') ? name.slice(name.lastIndexOf('/') + 1) : name;
}

/**
 * The plan: every key of namespace `ns` in the backup (and the namespace object itself), each to
 * be created, already there (left alone), or left out and why.
 */
export async function planNamespaceRestore(opts: {
  backup: Etcd3;
  live: Etcd3;
  namespace: string;
  resources?: string[];
  signal: AbortSignal;
}): Promise<NamespaceItem[]> {
  const items: NamespaceItem[] = [];
  const nsKey = `/registry/namespaces/${opts.namespace}`;
  for await (const e of pageKeys(opts.backup, { prefix: Buffer.from('/registry/'), signal: opts.signal })) {
    const text = e.key.toString('latin1');
    const k = parseKey(text);
    if (text !== nsKey && k.namespace !== opts.namespace) continue;
    const resource = shortResource(k.resource);
    const item: NamespaceItem = { key: e.key, resource, name: k.name, action: 'create' };
    const leftOut = await leftOutBecause(opts, e.key, k.resource, resource, text === nsKey);
    if (leftOut) Object.assign(item, { action: 'left-out', reason: leftOut });
    else if (await exists(opts.live, e.key)) item.action = 'exists';
    items.push(item);
  }
  // The namespace first: objects in a namespace that does not exist are invisible to the apiserver's clients.
  return items.sort((a, b) => Number(b.resource === 'namespaces') - Number(a.resource === 'namespaces'));
}

async function leftOutBecause(
  opts: { backup: Etcd3; resources?: string[] },
  key: Buffer,
  stored: string,
  resource: string,
  isNamespace: boolean,
): Promise<string | undefined> {
  if (isNamespace) return undefined;
  if (opts.resources) return opts.resources.includes(resource) || opts.resources.includes(stored) ? undefined : 'not in --resource';
  if (EXCLUDED_BY_DEFAULT.includes(resource))
    return `${resource} are recreated by controllers or stale (--resource ${resource} brings them back)`;
  if (resource === 'pods') {
    const value = (await opts.backup.kv.range({ key })).kvs[0]?.value;
    const owned = value ? hasOwnerReferences(value) : 'unknown';
    if (owned === 'yes') return 'owned by a controller, which recreates it (--resource pods brings it back)';
    if (owned === 'unknown')
      return 'cannot tell whether a controller owns it (encrypted or unknown encoding; --resource pods brings it back)';
  }
  return undefined;
}

async function exists(client: Etcd3, key: Buffer): Promise<boolean> {
  const res = await client.kv.range({ key, count_only: true });
  return Number(res.count) > 0;
}

export interface NamespaceResult {
  created: NamespaceItem[];
  skipped: NamespaceItem[];
  failed: { item: NamespaceItem; error: string }[];
}

/**
 * Creates what the plan says is missing, the namespace first, each in a transaction that writes
 * only where the key does not exist (its create revision is 0): never an overwrite, even of a key
 * created since the plan was made (that one is counted as skipped).
 */
export async function executeNamespaceRestore(opts: {
  backup: Etcd3;
  live: Etcd3;
  items: NamespaceItem[];
  signal: AbortSignal;
  onItem?: (item: NamespaceItem, outcome: string) => void;
}): Promise<NamespaceResult> {
  const result: NamespaceResult = { created: [], skipped: [], failed: [] };
  for (const item of opts.items) {
    if (item.action !== 'create') {
      result.skipped.push(item);
      continue;
    }
    opts.signal.throwIfAborted();
    try {
      const value = (await opts.backup.kv.range({ key: item.key })).kvs[0]?.value;
      if (!value) throw new Error('the key is gone from the scratch etcd');
      const res = await opts.live.kv.txn({
        compare: [{ key: item.key, target: 'Create', result: 'Equal', create_revision: 0 }],
        success: [{ request_put: { key: item.key, value } }],
        failure: [],
      });
      if (res.succeeded) {
        result.created.push(item);
        opts.onItem?.(item, 'created');
      } else {
        result.skipped.push({ ...item, action: 'exists', reason: 'created by someone else since the plan' });
        opts.onItem?.(item, 'skipped: it exists now');
      }
    } catch (err) {
      result.failed.push({ item, error: errorMessage(err) });
      opts.onItem?.(item, `FAILED: ${errorMessage(err)}`);
    }
  }
  return result;
}

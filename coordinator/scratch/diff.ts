import type { Etcd3 } from 'etcd3';
import { pageKeys, parseKey, type KeyEntry } from './keys.js';

/** Keys with their values per page when comparing: an object can be 1.5 MiB, so pages stay small. */
const VALUE_PAGE = 100;

export type Change = 'added' | 'removed' | 'changed';

export interface KeyChange {
  key: string;
  change: Change;
  resource: string;
  namespace?: string;
}

export interface DiffResult {
  changes: KeyChange[];
  byResource: Record<string, Record<Change, number>>;
  byNamespace: Record<string, Record<Change, number>>;
  /** Keys present on both sides with the same value. */
  unchanged: number;
}

/**
 * Keys added, removed and changed from `from` to `to`, both read in etcd's key order and merged
 * page by page: memory holds a page of each side and the list of changes, never all values.
 * With `namespace`, only that namespace's objects and the namespace object itself.
 */
export async function diffKeyspaces(opts: { from: Etcd3; to: Etcd3; namespace?: string; signal?: AbortSignal }): Promise<DiffResult> {
  const prefix = Buffer.from(opts.namespace ? '/registry/' : '');
  const wanted = (e: KeyEntry): boolean => {
    if (!opts.namespace) return true;
    const k = parseKey(e.key.toString('latin1'));
    return k.namespace === opts.namespace || (k.resource === 'namespaces' && k.namespace === undefined && k.name === opts.namespace);
  };
  const side = (client: Etcd3): AsyncGenerator<KeyEntry> =>
    filter(pageKeys(client, { prefix, values: true, pageSize: VALUE_PAGE, signal: opts.signal }), wanted);
  const a = side(opts.from);
  const b = side(opts.to);
  const result: DiffResult = { changes: [], byResource: {}, byNamespace: {}, unchanged: 0 };
  const record = (key: Buffer, change: Change): void => {
    const text = key.toString('latin1');
    const k = parseKey(text);
    result.changes.push({ key: text, change, resource: k.resource, ...(k.namespace !== undefined ? { namespace: k.namespace } : {}) });
    count(result.byResource, k.resource, change);
    if (k.namespace !== undefined) count(result.byNamespace, k.namespace, change);
  };
  let x = await a.next();
  let y = await b.next();
  while (!x.done || !y.done) {
    const order = x.done ? 1 : y.done ? -1 : Buffer.compare(x.value.key, y.value.key);
    if (order < 0) {
      record(x.value!.key, 'removed');
      x = await a.next();
    } else if (order > 0) {
      record(y.value!.key, 'added');
      y = await b.next();
    } else {
      if (!x.value!.value!.equals(y.value!.value!)) record(x.value!.key, 'changed');
      else result.unchanged++;
      x = await a.next();
      y = await b.next();
    }
  }
  return result;
}

async function* filter(source: AsyncGenerator<KeyEntry>, keep: (e: KeyEntry) => boolean): AsyncGenerator<KeyEntry> {
  for await (const e of source) if (keep(e)) yield e;
}

function count(table: Record<string, Record<Change, number>>, name: string, change: Change): void {
  table[name] ??= { added: 0, removed: 0, changed: 0 };
  table[name][change]++;
}

/**
 * A snapshot whose bytes are Kubernetes objects, as the apiserver stores them: 1 MiB configmaps in
 * one namespace, their namespace objects beside them. The sandbox's fill is 1 MiB values outside
 * /registry/; kbur's deep verify reads Kubernetes keys differently (by resource and namespace), so
 * the deep-verify scenario measures both shapes at the same size.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { noop } from 'cockatiel';
import { Etcd3 } from 'etcd3';
import { failure, measure, type Measured } from './proc.js';
import { ETCDCTL_ENV, MiB } from './util.js';

/** etcd's snapshot holds a 1 MiB value in ~1.08 MiB (bbolt pages and the key's revision). */
const SNAPSHOT_BYTES_PER_VALUE = 1.08 * MiB;
const IN_FLIGHT = 8;
const READY_TIMEOUT_MS = 60_000;

/** Writes the snapshot, about `snapshotMiB`, to `file`, from a one-member etcd of its own on `<network>.50` (removed after). */
export async function kubernetesShapedSnapshot(opts: {
  dir: string;
  network: string;
  snapshotMiB: number;
  file: string;
  signal: AbortSignal;
}): Promise<number> {
  const dataDir = join(opts.dir, 'kubernetes-shaped.etcd');
  await rm(dataDir, { recursive: true, force: true });
  await mkdir(opts.dir, { recursive: true });
  const host = `${opts.network}.50`;
  const client = `http://${host}:2379`;
  const peer = `http://${host}:2380`;
  const quota = Math.round(2 * opts.snapshotMiB + 512) * MiB;
  const abort = new AbortController();
  const etcd = measure(
    'etcd',
    [
      ...['--name', 'shaped', '--data-dir', dataDir, '--listen-client-urls', client, '--advertise-client-urls', client],
      ...['--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `shaped=${peer}`],
      ...['--quota-backend-bytes', String(quota)],
    ],
    ETCDCTL_ENV,
    AbortSignal.any([opts.signal, abort.signal]),
  );
  let exited: Measured | undefined;
  etcd.then((m) => (exited = m)).catch(() => undefined);
  // Without etcd3's circuit breaker and gRPC's growing backoff: etcd is polled while it starts.
  const kv = new Etcd3({
    hosts: client,
    faultHandling: { host: () => noop, global: noop },
    grpcOptions: { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 250 },
  });
  try {
    for (const deadline = Date.now() + READY_TIMEOUT_MS; ;) {
      if (
        await kv.maintenance.status().then(
          () => true,
          () => false,
        )
      )
        break;
      if (exited) throw failure('the etcd for the Kubernetes-shaped snapshot', exited);
      if (Date.now() > deadline) throw new Error(`the etcd for the Kubernetes-shaped snapshot did not answer on ${client}`);
      await sleep(100, undefined, { signal: opts.signal });
    }
    for (const ns of ['default', 'bench'])
      await kv.put(`/registry/namespaces/${ns}`).value(JSON.stringify({ kind: 'Namespace', metadata: { name: ns } }));
    const values = Math.max(1, Math.round((opts.snapshotMiB * MiB) / SNAPSHOT_BYTES_PER_VALUE));
    const value = randomBytes(MiB - 200);
    let next = 0;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < values) {
          opts.signal.throwIfAborted();
          await kv.put(`/registry/configmaps/bench/fill-${next++}`).value(value);
        }
      }),
    );
    const saved = await measure('etcdctl', ['--endpoints', client, 'snapshot', 'save', opts.file], ETCDCTL_ENV, opts.signal);
    if (saved.code !== 0) throw failure('etcdctl snapshot save of the Kubernetes-shaped etcd', saved);
    return (await stat(opts.file)).size;
  } finally {
    kv.close();
    abort.abort();
    await etcd.catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
  }
}

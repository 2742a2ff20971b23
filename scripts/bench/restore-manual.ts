import { randomBytes } from 'node:crypto';
import { mkdir, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Sandbox, SandboxNode } from '../../test/sandbox/cluster.js';
import { waitHealthy } from './etcd.js';
import { failure, measure } from './proc.js';
import { ETCDCTL_ENV, round } from './util.js';

/** Where the manual procedure puts things: beside manifests/, in the node's dir, beside the data dir. */
export const MANUAL = {
  heldDir: 'bench-manual-held',
  copyDir: 'bench-manual',
  newSuffix: '.bench-manual-new',
  oldSuffix: '.bench-manual-old',
} as const;

export const MANUAL_STEPS = ['copy', 'stop', 'restore', 'swap', 'start'] as const;

export type ManualStep = (typeof MANUAL_STEPS)[number];

export interface ManualOutcome {
  seconds: number;
  steps: Record<ManualStep, number>;
  etcdctlCpuSeconds: number;
  cpCpuSeconds: number;
}

/** The operator's `etcdctl snapshot restore` of `node`'s member into `dataDir`, for a new cluster of `nodes` with `token`. */
export function etcdctlRestoreArgs(snapshot: string, node: SandboxNode, nodes: SandboxNode[], token: string, dataDir: string): string[] {
  return [
    ...['snapshot', 'restore', snapshot, '--name', node.name],
    ...['--initial-cluster', nodes.map((n) => `${n.name}=${n.peerUrl}`).join(','), '--initial-cluster-token', token],
    ...['--initial-advertise-peer-urls', node.peerUrl, '--data-dir', dataDir],
  ];
}

/**
 * etcd's recovery guide for a kubeadm static-pod cluster, by hand: the snapshot copied to every
 * node, etcd stopped by moving its manifest out, `etcdctl snapshot restore` of every member in
 * parallel into a new dir, the data dirs swapped, the manifests moved back, until all are healthy.
 * The leader is stopped last (as kbur and the sandbox do): stopped while its followers stop too,
 * it waits ~7 s for a leadership transfer that cannot happen.
 */
export async function manualRestore(
  sandbox: Sandbox,
  snapshot: string,
  leader: string | undefined,
  signal: AbortSignal,
): Promise<ManualOutcome> {
  const nodes = sandbox.nodes;
  const token = `bench-manual-${randomBytes(4).toString('hex')}`;
  const steps = {} as Record<ManualStep, number>;
  const t0 = performance.now();
  let mark = t0;
  const lap = (step: ManualStep): void => {
    const now = performance.now();
    steps[step] = round((now - mark) / 1000);
    mark = now;
  };

  // 1. The snapshot onto every node (an operator scp's it).
  const copies = await Promise.all(
    nodes.map(async (n) => {
      const dir = join(n.dir, MANUAL.copyDir);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const to = join(dir, 'snapshot.db');
      const m = await measure('cp', [snapshot, to], ETCDCTL_ENV, signal);
      if (m.code !== 0) throw failure(`cp ${snapshot} ${to}`, m);
      return { to, cpu: m.cpuSeconds };
    }),
  );
  lap('copy');

  // 2. etcd stopped: its manifest out of manifests/.
  const held = (n: SandboxNode): string => join(n.kubernetesDir, MANUAL.heldDir, 'etcd.yaml');
  const groups = leader ? [nodes.filter((n) => n.name !== leader), nodes.filter((n) => n.name === leader)] : [nodes];
  for (const group of groups) {
    await Promise.all(
      group.map(async (n) => {
        await mkdir(dirname(held(n)), { recursive: true, mode: 0o700 });
        await rename(join(n.manifestsDir, 'etcd.yaml'), held(n));
        await sandbox.kubelet.waitFor(n.name, 'etcd', 'stopped');
      }),
    );
  }
  lap('stop');

  // 3. Every member restored from its copy, in parallel, into a new dir.
  const restores = await Promise.all(
    nodes.map(async (n, i) => {
      const args = etcdctlRestoreArgs(copies[i]!.to, n, nodes, token, `${n.dataDir}${MANUAL.newSuffix}`);
      const m = await measure('etcdctl', args, ETCDCTL_ENV, signal);
      if (m.code !== 0) throw failure(`etcdctl snapshot restore on ${n.name}`, m);
      return m;
    }),
  );
  lap('restore');

  // 4. The old data dir aside, the restored one in its place.
  await Promise.all(
    nodes.map(async (n) => {
      await rename(n.dataDir, `${n.dataDir}${MANUAL.oldSuffix}`);
      await rename(`${n.dataDir}${MANUAL.newSuffix}`, n.dataDir);
    }),
  );
  lap('swap');

  // 5. The manifests back; wait until every member answers.
  await Promise.all(nodes.map((n) => rename(held(n), join(n.manifestsDir, 'etcd.yaml'))));
  await waitHealthy(sandbox, signal);
  lap('start');
  return {
    seconds: (performance.now() - t0) / 1000,
    steps,
    etcdctlCpuSeconds: restores.reduce((a, m) => a + m.cpuSeconds, 0),
    cpCpuSeconds: copies.reduce((a, c) => a + c.cpu, 0),
  };
}

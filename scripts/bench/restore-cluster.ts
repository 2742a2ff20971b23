import { readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import type { Sandbox, SandboxNode } from '../../test/sandbox/cluster.js';
import { clusterIdentity, keyCounts, waitHealthy } from './etcd.js';
import { COPIES_CONFIG, type RestoreBackup } from './restore.js';
import { MANUAL } from './restore-manual.js';

/** The control-plane containers of a sandbox node, as the kubelet stand-in names them. */
export const CONTAINERS = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler'];

/** What a restore left beside the data dirs, in the state dirs (restores/ only) and beside manifests/. */
export async function leftovers(sandbox: Sandbox): Promise<string[]> {
  const found: string[] = [];
  for (const n of sandbox.nodes) {
    const base = basename(n.dataDir);
    for (const e of await readdir(dirname(n.dataDir)).catch(() => [] as string[]))
      if (e.startsWith(`${base}.`) || e === MANUAL.copyDir) found.push(join(dirname(n.dataDir), e));
    for (const e of await readdir(n.kubernetesDir).catch(() => [] as string[]))
      if (e.startsWith('kbur-held-') || e.startsWith('kubernetes.kbur-') || e === MANUAL.heldDir) found.push(join(n.kubernetesDir, e));
    for (const e of await readdir(join(n.stateDir, 'restores')).catch(() => [] as string[])) found.push(join(n.stateDir, 'restores', e));
  }
  return found;
}

/**
 * Deletes what a finished restore leaves (old data dirs <dataDir>.kbur-<id> and the manual
 * procedure's, staged snapshots, the manual procedure's copies of the snapshot, empty held folders)
 * and kbur's journals. Only called once the cluster was checked healthy on its restored data: never
 * the live data dir, never the snapshot copies the agents keep (<stateDir>/snapshots/, which the
 * copies mode restores from in every run; a staged snapshot is a hard link to one, deleting it
 * leaves the copy whole).
 */
export async function removeLeftovers(sandbox: Sandbox, cluster: string): Promise<void> {
  const within = (path: string, dir: string): boolean => path === dir || path.startsWith(`${dir}/`) || dir.startsWith(`${path}/`);
  for (const path of await leftovers(sandbox)) {
    if (sandbox.nodes.some((n) => path === n.dataDir)) throw new Error(`refusing to delete the live data dir ${path}`);
    if (sandbox.nodes.some((n) => within(path, localCopies(n))))
      throw new Error(`refusing to delete ${path}: the snapshot copies an agent keeps are in it`);
    await rm(path, { recursive: true, force: true });
  }
  await rm(join(sandbox.repoDir, cluster, 'restores'), { recursive: true, force: true });
}

/** Where a node's agent keeps its snapshot copies (see agent/local-snapshots.ts). */
export function localCopies(n: SandboxNode): string {
  return join(n.stateDir, 'snapshots');
}

/**
 * The sandbox's kbur.yaml with backup.copySnapshotToNodes on, written beside it. Its paths are the
 * sandbox's, absolute: the copy works from any directory.
 */
export async function writeCopiesConfig(sandbox: Sandbox): Promise<string> {
  const config = parseYaml(await readFile(sandbox.coordinatorConfig, 'utf8')) as Record<string, unknown>;
  if ('backup' in config) throw new Error(`${sandbox.coordinatorConfig} already has a backup: section; the bench sets it itself`);
  const to = join(dirname(sandbox.coordinatorConfig), COPIES_CONFIG);
  await writeFile(to, stringifyYaml({ ...config, backup: { copySnapshotToNodes: true } }), { mode: 0o600 });
  return to;
}

/** Every node keeps the copy of `backup` that its `kbur backup` reported, whole in size. */
export async function assertCopiesKept(sandbox: Sandbox, backup: RestoreBackup): Promise<void> {
  const missing: string[] = [];
  for (const n of sandbox.nodes) {
    const path = join(localCopies(n), `${backup.id}.db`);
    const size = await stat(path).then(
      (s) => s.size,
      () => undefined,
    );
    if (size !== backup.snapshotBytes) missing.push(`${n.name}: ${path} ${size === undefined ? 'is missing' : `has ${size} bytes`}`);
  }
  if (missing.length)
    throw new Error(`the snapshot copies of backup ${backup.id} (${backup.snapshotBytes} bytes) are not all kept: ${missing.join('; ')}`);
}

/** The cluster as before any restore: every manifest in place and its container running, etcd healthy, nothing left over. */
export async function assertNormal(sandbox: Sandbox, signal: AbortSignal): Promise<void> {
  for (const n of sandbox.nodes) {
    const manifests = await readdir(n.manifestsDir);
    for (const c of CONTAINERS) {
      if (!manifests.includes(`${c}.yaml`)) throw new Error(`${n.name}: ${c}.yaml is not in ${n.manifestsDir}`);
      await sandbox.kubelet.waitFor(n.name, c, 'running', 10_000);
    }
  }
  const left = await leftovers(sandbox);
  if (left.length) throw new Error(`left over from a restore: ${left.join(', ')}`);
  await waitHealthy(sandbox, signal);
}

/**
 * After a restore: all members healthy, in a new cluster (not `clusterIdBefore`) with the same
 * members, and on every member the backup's key count. Returns the problems and a summary.
 */
export async function checkRestored(
  sandbox: Sandbox,
  want: { clusterIdBefore: string; members: string[]; keyCount: number; registryKeyCount: number },
  signal: AbortSignal,
): Promise<{ problems: string[]; summary: string }> {
  await waitHealthy(sandbox, signal);
  const problems: string[] = [];
  const id = await clusterIdentity(sandbox);
  const ids = new Set(id.clusterIds);
  if (id.clusterIds.length !== sandbox.nodes.length || ids.size !== 1)
    problems.push(`members report cluster ids ${id.clusterIds.join(', ')}`);
  if (ids.has(want.clusterIdBefore)) problems.push(`cluster id ${want.clusterIdBefore} did not change: no new cluster was bootstrapped`);
  if (id.members.join(' ') !== want.members.join(' ')) problems.push(`members ${id.members.join(' ')}, expected ${want.members.join(' ')}`);
  const counts = await Promise.all(sandbox.nodes.map((n) => keyCounts(sandbox, n)));
  counts.forEach((c, i) => {
    const node = sandbox.nodes[i]!.name;
    if (c.total !== want.keyCount) problems.push(`${node}: ${c.total} keys, the backup has ${want.keyCount}`);
    if (c.registry !== want.registryKeyCount)
      problems.push(`${node}: ${c.registry} keys under /registry/, ${want.registryKeyCount} after the backup`);
  });
  const summary = `healthy, new cluster ${[...ids].map((x) => BigInt(x).toString(16)).join(',')}, ${id.members.length} members, keys ${counts.map((c) => `${c.total} (/registry/ ${c.registry})`).join(' / ')}`;
  return { problems, summary };
}

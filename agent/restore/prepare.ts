import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { PrepareRestoreRequest, PrepareRestoreResponse } from '../../proto/gen/kbur/v1/agent.js';
import { runTool } from '../../shared/child.js';
import { asKburError } from '../../shared/errors.js';
import { pathExists } from '../../shared/path-exists.js';
import { discoverEtcd, type EtcdSettings } from '../etcd/discovery.js';
import { checkLocalCopy, listLocalSnapshots } from '../local-snapshots.js';
import { diskOf, recentMountTable } from '../node-info.js';
import type { AgentState } from '../state.js';
import { assertRestoreId } from './record.js';
import { etcdMode, presentManifests, restoreInProgress } from './control-plane.js';
import { findRestoreTool } from '../../shared/restore-tool.js';

/** A restored member's WAL and snap files on top of the db. */
const WAL_ALLOWANCE = 128 << 20;
/** A mount table this recent is fresh enough to say which disk holds what (free space is statfs'd now). */
const MOUNTS_MAX_AGE_MS = 5_000;

/** Everything a restore of this node needs, checked without changing anything. */
export async function prepareRestore(s: AgentState, req: PrepareRestoreRequest): Promise<PrepareRestoreResponse> {
  assertRestoreId(req.restoreId);
  const problems: string[] = [];
  const member = await memberToRestore(s, req);
  if (member.problem) problems.push(member.problem);
  const dataDir = member.settings?.dataDir ?? '';
  // Independent looks (each may spawn a process): at once, the restore waits on the slowest only.
  const [tool, localCopy, mounts, other, manifests, dataDirBytes] = await Promise.all([
    findRestoreTool(s.config.etcd.restoreTool).catch((err: unknown) => {
      problems.push(asKburError(err).message);
      return undefined;
    }),
    findLocalCopy(s, req),
    recentMountTable(MOUNTS_MAX_AGE_MS),
    restoreInProgress(s, req.restoreId),
    presentManifests(s, req.restoreId),
    dataDir ? duBytes(dataDir) : Promise.resolve(0),
  ]);
  // A fresh mount table (mounts awaited above): which disk holds what decides the space needed.
  const [stateDisk, dataDisk] = await Promise.all([diskOf(s.config.stateDir, mounts), diskOf(dataDir || s.config.stateDir, mounts)]);
  const restored = req.snapshotSize + WAL_ALLOWANCE;
  // A snapshot staged from the local copy is a hard link: it takes no space.
  const staged = localCopy.has ? 0 : req.snapshotSize;
  const needed =
    stateDisk.mount === dataDisk.mount
      ? { [dataDisk.mount]: staged + restored }
      : { [stateDisk.mount]: staged, [dataDisk.mount]: restored };
  for (const disk of [stateDisk, dataDisk]) {
    const need = needed[disk.mount] ?? 0;
    if (disk.freeBytes < need)
      problems.push(
        `${disk.mount} has ${disk.freeBytes} bytes free; the restore needs ${need} there (staged snapshot and restored data dir)`,
      );
  }
  if (other)
    problems.push(`restore ${other} is still in progress here (it holds the control plane stopped): resume it or roll it back first`);
  if (!other && etcdMode(s) === 'static-pod' && !member.needsArchive && !manifests.includes('etcd.yaml'))
    problems.push(`no etcd.yaml in ${s.config.kubernetesDir}/manifests: cannot stop or start etcd here`);
  return {
    node: s.config.node,
    memberName: member.settings?.name ?? '',
    dataDir,
    etcdMode: etcdMode(s),
    restoreTool: tool?.kind ?? '',
    restoreToolPath: tool?.path ?? '',
    restoreToolVersion: tool?.version ?? '',
    canBumpRevision: tool?.canBumpRevision ?? false,
    manifests,
    stateDisk,
    dataDisk,
    neededBytes: Object.values(needed).reduce((a, b) => a + b, 0),
    problems,
    dataDirBytes,
    hasLocalCopy: localCopy.has,
    localCopyProblem: localCopy.problem,
    needsArchive: member.needsArchive,
    settingsFrom: member.from,
    found: await whatIsHere(s, manifests, dataDir),
  };
}

/**
 * The member a restore brings back here: the node's own, or on a node that has none (reset, or
 * new) the one its archive's etcd manifest describes, under the config's etcd.* keys.
 */
async function memberToRestore(
  s: AgentState,
  req: PrepareRestoreRequest,
): Promise<{ settings?: EtcdSettings; from: string; needsArchive: boolean; problem?: string }> {
  const own = s.etcd;
  if (!own.missing)
    return { settings: own.settings, from: own.settings.manifest ? `manifest ${own.settings.manifest}` : 'config', needsArchive: false };
  if (!req.archivedEtcdManifest) return { from: '', needsArchive: true };
  try {
    return { settings: await discoverEtcd(s.config, req.archivedEtcdManifest), from: 'archive', needsArchive: true };
  } catch (err) {
    return { from: 'archive', needsArchive: true, problem: asKburError(err).message };
  }
}

const KUBECONFIGS = ['admin.conf', 'super-admin.conf', 'controller-manager.conf', 'scheduler.conf', 'kubelet.conf'];

/** What the node has of its control plane, for the plan: a reset node shows it has nothing left. */
async function whatIsHere(s: AgentState, manifests: string[], dataDir: string): Promise<string[]> {
  const dir = s.config.kubernetesDir;
  const [pki, kubeconfigs, hasDataDir] = await Promise.all([
    readdir(join(dir, 'pki')).catch(() => []),
    Promise.all(KUBECONFIGS.map(async (f) => ((await pathExists(join(dir, f))) ? [f] : []))).then((x) => x.flat()),
    dataDir ? pathExists(dataDir) : Promise.resolve(false),
  ]);
  return [
    `manifests: ${manifests.join(', ') || 'none'}`,
    `pki: ${pki.length ? `${pki.length} entries` : 'none'}`,
    `kubeconfigs: ${kubeconfigs.join(', ') || 'none'}`,
    `data dir: ${dataDir ? `${dataDir}${hasDataDir ? '' : ' (missing)'}` : 'unknown'}`,
  ];
}

/** Whether this node keeps a copy of the backup's snapshot; with check_local_copy, reread and checked. */
async function findLocalCopy(s: AgentState, req: PrepareRestoreRequest): Promise<{ has: boolean; problem: string }> {
  if (!req.backupId) return { has: false, problem: '' };
  const want = { size: req.snapshotSize, sha256: req.snapshotSha256 };
  if (req.checkLocalCopy) {
    return checkLocalCopy(s, req.backupId, want).then(
      () => ({ has: true, problem: '' }),
      (err: unknown) => {
        const e = asKburError(err);
        return { has: false, problem: e.code === 'NOT_FOUND' ? '' : e.message };
      },
    );
  }
  const copy = (await listLocalSnapshots(s.config.stateDir)).find((c) => c.backupId === req.backupId);
  return { has: copy?.size === want.size && copy.sha256 === want.sha256, problem: '' };
}

async function duBytes(path: string): Promise<number> {
  try {
    const { stdout } = await runTool('du', ['-sb', path], { timeout: 30_000 });
    return Number(stdout.split('\t')[0]) || 0;
  } catch {
    return 0;
  }
}

import { chmod, chown, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { RestoreEtcdMemberRequest } from '../../proto/gen/kbur/v1/agent.js';
import { runTool } from '../../shared/child.js';
import { KburError } from '../../shared/errors.js';
import { pathExists } from '../../shared/path-exists.js';
import { asideDataDir, restoredDataDir, workDataDir } from '../../shared/restore-names.js';
import { fsyncDir } from '../../shared/streams.js';
import { rollbackKubernetesDir } from './kubernetes-dir.js';
import type { AgentState } from '../state.js';
import {
  CONTROL_PLANE_MANIFESTS,
  ETCD_MANIFEST,
  etcdMode,
  holdManifest,
  manifestsDir,
  startControlPlane,
  startEtcd,
  stopEtcdUnit,
  waitEtcdStopped,
} from './control-plane.js';
import { readRecord, restoreDir, writeRecord, type RestoreRecord } from './record.js';
import { stepAlreadyDone, stepDone, type StepResult } from './step.js';
import { findRestoreTool, toolEnv } from '../../shared/restore-tool.js';

/**
 * Restores the staged snapshot into a new dir with the new cluster's membership and token, then
 * moves the data dir aside and puts the restored one in its place, owned and moded as the old one.
 */
export async function restoreMember(s: AgentState, req: RestoreEtcdMemberRequest): Promise<StepResult> {
  const { stateDir } = s.config;
  const dataDir = s.etcd.settings.dataDir;
  const record = await readRecord(stateDir, req.restoreId);
  if (record.restored) return stepAlreadyDone();
  if (s.etcd.missing) {
    throw new KburError('FAILED_PRECONDITION', `cannot restore the member: ${s.etcd.missing}`, {
      hint: `its archive must be unpacked first (the restore-kubernetes step of kbur restore --resume ${req.restoreId})`,
    });
  }
  if (!record.staged || !(await pathExists(record.staged.path))) {
    throw new KburError('FAILED_PRECONDITION', `no staged snapshot for restore ${req.restoreId} on this node`, {
      hint: 'stage it first (kbur restore does)',
    });
  }
  await waitEtcdStopped(s);
  const tool = await findRestoreTool(s.config.etcd.restoreTool);
  const work = workDataDir(dataDir, req.restoreId);
  // Our own output of an interrupted attempt; never the user's data (that is dataDir or the aside dir).
  await rm(work, { recursive: true, force: true });
  const args = [
    'snapshot',
    'restore',
    record.staged.path,
    '--name',
    req.name,
    '--initial-cluster',
    req.initialCluster,
    '--initial-cluster-token',
    req.initialClusterToken,
    '--initial-advertise-peer-urls',
    req.initialAdvertisePeerUrls.join(','),
    '--data-dir',
    work,
  ];
  if (req.bumpRevision > 0) {
    if (!tool.canBumpRevision) {
      throw new KburError('FAILED_PRECONDITION', `${tool.path} (${tool.version}) cannot bump the revision`, {
        hint: 'restore without a revision bump, or install etcdutl >= 3.5.10',
      });
    }
    args.push('--bump-revision', String(req.bumpRevision), '--mark-compacted');
  }
  try {
    await runTool(tool.path, args, {
      env: toolEnv(),
      timeout: 30 * 60_000,
      maxBuffer: 16 << 20,
      failure: {
        what: `${tool.kind} snapshot restore failed`,
        lines: 5,
        hint: 'nothing was changed on this node yet; read the error, fix it, then kbur restore --resume',
      },
    });
  } catch (err) {
    await rm(work, { recursive: true, force: true });
    throw err;
  }

  const done = [`restored the snapshot with ${tool.kind} ${tool.version} into ${work}`];
  const aside = asideDataDir(dataDir, req.restoreId);
  const owner = (await stat(dataDir).catch(() => undefined)) ?? (await stat(dirname(dataDir)));
  if (!record.dataDirAside && (await pathExists(dataDir))) {
    record.dataDirAside = aside;
    await writeRecord(stateDir, record);
    await rename(dataDir, aside);
    done.push(`moved ${dataDir} aside to ${aside}`);
  }
  await rename(work, dataDir);
  await chmod(dataDir, 0o700);
  await chownTree(dataDir, owner.uid, owner.gid);
  await fsyncDir(dirname(dataDir));
  record.restored = true;
  await writeRecord(stateDir, record);
  done.push(`put the restored data dir in place at ${dataDir}`);
  return stepDone(done);
}

/** Puts this node back as it was before the restore: the old data dir in place, etcd and the control plane started. */
export async function rollbackMember(s: AgentState, restoreId: string): Promise<StepResult> {
  const { stateDir } = s.config;
  // A restore that changed anything here recorded it first: without a record there is nothing to put back (nor to stop).
  if (!(await pathExists(join(restoreDir(stateDir, restoreId), 'record.json')))) return stepAlreadyDone();
  const record = await readRecord(stateDir, restoreId);
  if (record.rolledBack) return stepAlreadyDone();
  const done: string[] = [];
  const names = [...CONTROL_PLANE_MANIFESTS, ...(etcdMode(s) === 'static-pod' ? ['etcd.yaml'] : [])];
  for (const name of names) if (await holdManifest(s, record, name)) done.push(`moved ${name} out to stop it`);
  if (await stopEtcdUnit(s, record)) done.push(`stopped ${s.config.etcd.unit}`);
  // A node still without a member (reset, its archive not unpacked yet) has no data dir of this restore's.
  if (!s.etcd.missing) await rollbackDataDir(s, record, done);
  done.push(...(await rollbackKubernetesDir(s, record)));
  // A node the restore found reset had no etcd manifest: it is left without one, etcd stopped.
  if (await etcdToStart(s, record)) done.push(...(await startEtcd(s, restoreId)).done);
  else done.push('no etcd manifest here before the restore: etcd stays stopped, as the restore found this node');
  done.push(...(await startControlPlane(s, restoreId)).done);
  record.rolledBack = true;
  await writeRecord(stateDir, record);
  return stepDone(done);
}

async function rollbackDataDir(s: AgentState, record: RestoreRecord, done: string[]): Promise<void> {
  const dataDir = s.etcd.settings.dataDir;
  await waitEtcdStopped(s);
  if (record.restored && (await pathExists(dataDir))) {
    const restoredAside = restoredDataDir(dataDir, record.restoreId);
    await rename(dataDir, restoredAside);
    done.push(`moved the restored data dir aside to ${restoredAside}`);
  }
  if (record.dataDirAside && (await pathExists(record.dataDirAside))) {
    await rename(record.dataDirAside, dataDir);
    done.push(`moved ${record.dataDirAside} back to ${dataDir}`);
  }
  await fsyncDir(dirname(dataDir));
  record.restored = false;
  await writeRecord(s.config.stateDir, record);
}

async function etcdToStart(s: AgentState, record: RestoreRecord): Promise<boolean> {
  if (etcdMode(s) === 'systemd') return true;
  const held = record.held.find((h) => h.name === ETCD_MANIFEST);
  return (held !== undefined && (await pathExists(held.to))) || pathExists(join(manifestsDir(s), ETCD_MANIFEST));
}

async function chownTree(path: string, uid: number, gid: number): Promise<void> {
  await chown(path, uid, gid);
  for (const entry of await readdir(path, { recursive: true, withFileTypes: true })) {
    await chown(join(entry.parentPath, entry.name), uid, gid);
  }
}

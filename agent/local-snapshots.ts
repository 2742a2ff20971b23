import { link, mkdir, readFile, readdir, rename, rm, stat, statfs } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { KeepSnapshotRequest, LocalSnapshot } from '../proto/gen/kbur/v1/agent.js';
import { KburError } from '../shared/errors.js';
import { BACKUP_ID, checkId } from '../shared/manifest.js';
import { byCodeUnits } from '../shared/order.js';
import { checkSnapshotFile, fsyncDir, writeFileAtomic } from '../shared/streams.js';
import { receiveFile, uploadHeader } from './upload.js';
import type { AgentState } from './state.js';

/**
 * Snapshot copies this node keeps so that a restore can start without moving the snapshot over
 * the network (as RKE2 and k3s keep theirs on every server): <stateDir>/snapshots/<backupId>.db,
 * with <backupId>.json (size, sha256) written once the copy is whole and checked.
 */
export function localSnapshotDir(stateDir: string): string {
  return join(stateDir, 'snapshots');
}

/**
 * Share of the disk a kept copy must leave free: etcd's data dir may live on the same disk, and below
 * 10% free the kubelet's default eviction threshold (nodefs.available<10%) starts evicting pods.
 */
const MIN_FREE_SHARE = 0.1;

/**
 * The copies this node keeps, newest first: by the time in the backup id (to the second), then by
 * when the copy arrived. A copy whose file does not match its record is not offered.
 */
export async function listLocalSnapshots(stateDir: string): Promise<LocalSnapshot[]> {
  const dir = localSnapshotDir(stateDir);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const copies: (LocalSnapshot & { keptAt: string })[] = [];
  for (const name of names) {
    const backupId = name.replace(/\.json$/, '');
    if (backupId === name || !BACKUP_ID.test(backupId)) continue;
    const path = join(dir, `${backupId}.db`);
    try {
      const meta = JSON.parse(await readFile(join(dir, name), 'utf8')) as { size?: unknown; sha256?: unknown; keptAt?: unknown };
      if (typeof meta.size !== 'number' || typeof meta.sha256 !== 'string') continue;
      if ((await stat(path)).size !== meta.size) continue;
      copies.push({ backupId, size: meta.size, sha256: meta.sha256, path, keptAt: typeof meta.keptAt === 'string' ? meta.keptAt : '' });
    } catch {
      // A record being written or a copy being removed: not a copy to offer.
    }
  }
  const stamp = (c: { backupId: string }): string => c.backupId.slice(0, c.backupId.indexOf('-'));
  return copies.sort((a, b) => byCodeUnits(stamp(b), stamp(a)) || byCodeUnits(b.keptAt, a.keptAt)).map(({ keptAt: _, ...copy }) => copy);
}

/**
 * KeepSnapshot: receives a backup's snapshot (checked like a staged one), records it, then removes
 * the copies beyond the newest localSnapshots.keep. The new copy is whole before any old one goes.
 */
export async function keepSnapshot(
  s: AgentState,
  messages: AsyncIterable<KeepSnapshotRequest>,
  signal: AbortSignal,
): Promise<LocalSnapshot> {
  const { header, rest } = await uploadHeader(messages, 'KeepSnapshot (backup id, size, sha256)');
  checkId(header.backupId, 'backup');
  const keep = s.config.localSnapshots.keep;
  if (keep === 0) {
    throw new KburError('FAILED_PRECONDITION', `${s.config.node} keeps no snapshot copies (localSnapshots.keep is 0 in its agent config)`, {
      hint: 'set localSnapshots.keep to 1 or more in that agent config, or set backup.copySnapshotToNodes to false in kbur.yaml',
    });
  }
  const dir = localSnapshotDir(s.config.stateDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const fs = await statfs(dir);
  const freeAfter = fs.bavail * fs.bsize - header.size;
  if (freeAfter < MIN_FREE_SHARE * fs.blocks * fs.bsize) {
    throw new KburError(
      'FAILED_PRECONDITION',
      `${s.config.node}: a ${header.size}-byte copy in ${dir} would leave less than ${MIN_FREE_SHARE * 100}% of that disk free`,
      { hint: "free space there, point the agent's stateDir at a larger disk, or set localSnapshots.keep to 0 on that node" },
    );
  }
  const path = await receiveFile(header, rest, { dir, name: `${header.backupId}.db`, snapshot: true, signal });
  await writeFileAtomic(
    join(dir, `${header.backupId}.json`),
    JSON.stringify({ backupId: header.backupId, size: header.size, sha256: header.sha256, keptAt: new Date().toISOString() }) + '\n',
  );
  await prune(dir, keep, header.backupId);
  return { backupId: header.backupId, size: header.size, sha256: header.sha256, path };
}

/** Removes every copy (and any leftover without its record) but the one just kept and the newest others, `keep` in all. */
async function prune(dir: string, keep: number, justKept: string): Promise<void> {
  const others = (await listLocalSnapshots(dirname(dir))).map((c) => c.backupId).filter((id) => id !== justKept);
  const kept = new Set([justKept, ...others].slice(0, keep));
  for (const name of await readdir(dir)) {
    const id = name.replace(/\.(db|json)$/, '');
    if (BACKUP_ID.test(id) && !kept.has(id)) await rm(join(dir, name), { force: true });
  }
  await fsyncDir(dir);
}

/** The copy of `backupId` this node keeps, reread: its size, sha256 and etcd's integrity hash must be the backup's. */
export async function checkLocalCopy(
  s: AgentState,
  backupId: string,
  want: { size: number; sha256: string },
  signal?: AbortSignal,
): Promise<LocalSnapshot> {
  checkId(backupId, 'backup');
  const copy = (await listLocalSnapshots(s.config.stateDir)).find((c) => c.backupId === backupId);
  if (!copy) {
    throw new KburError('NOT_FOUND', `${s.config.node} keeps no copy of backup ${backupId}`, {
      hint: 'the snapshot is uploaded from the repository instead',
    });
  }
  await checkSnapshotFile(copy.path, want, 'the local copy', { signal });
  return copy;
}

/**
 * Stages a restore's snapshot from the local copy of its backup, checked first. The staged file is
 * a hard link to the copy: no bytes are copied, and it stays whole if the copy is pruned meanwhile.
 */
export async function stageLocalCopy(
  s: AgentState,
  backupId: string,
  want: { size: number; sha256: string },
  target: string,
  signal: AbortSignal,
): Promise<string> {
  const copy = await checkLocalCopy(s, backupId, want, signal);
  await mkdir(dirname(target), { recursive: true, mode: 0o700 });
  const part = `${target}.part`;
  await rm(part, { force: true });
  await link(copy.path, part);
  await rename(part, target);
  await fsyncDir(dirname(target));
  return target;
}

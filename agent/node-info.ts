import { existsSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { dirname, resolve, sep } from 'node:path';
import si from 'systeminformation';
import type { DiskSpace, GetNodeInfoResponse } from '../proto/gen/kbur/v1/agent.js';
import { KBUR_VERSION } from '../shared/version.js';
import type { LocalEtcd } from './etcd/member.js';
import { listLocalSnapshots } from './local-snapshots.js';

/** What the coordinator needs to know about this node before it plans anything. */
export async function nodeInfo(
  node: string,
  stateDir: string,
  etcd: LocalEtcd,
  opts: { countKeys: boolean },
): Promise<GetNodeInfoResponse> {
  const [os, mounts, member, localSnapshots] = await Promise.all([
    osInfo(),
    lastMountTable(),
    etcd.status({ keyCount: opts.countKeys }),
    listLocalSnapshots(stateDir),
  ]);
  const [etcdDataDisk, stateDisk] = await Promise.all([diskOf(etcd.settings.dataDir, mounts), diskOf(stateDir, mounts)]);
  rereadOldMountTable();
  return {
    node,
    hostname: os.hostname,
    os: `${os.distro} ${os.release}`.trim(),
    kernel: os.kernel,
    agentVersion: KBUR_VERSION,
    etcdDataDisk,
    stateDisk,
    etcd: member,
    localSnapshots,
  };
}

/** The OS does not change under a running agent; asking spawns a handful of processes, so once. */
let cachedOs: Promise<si.Systeminformation.OsData> | undefined;
function osInfo(): Promise<si.Systeminformation.OsData> {
  cachedOs ??= si.osInfo().catch((err: unknown) => {
    cachedOs = undefined;
    throw err;
  });
  return cachedOs;
}

/**
 * The mount table as systeminformation last read it. Reading it spawns df: 10-20 ms of every node
 * info, which every backup waits for before etcd's first byte. Mounts seldom change under a
 * running agent, and a disk's free space comes from statfs(2) on each call (diskOf), so node info
 * takes the last table read, and has it read again in the background once it is a minute old,
 * after its answer: a mount is named at most a minute and a call late. The first call waits for it.
 */
const MOUNTS_MAX_AGE_MS = 60_000;
let mounts: { table: si.Systeminformation.FsSizeData[]; readAt: number } | undefined;
let readingMounts: Promise<si.Systeminformation.FsSizeData[]> | undefined;

function readMounts(): Promise<si.Systeminformation.FsSizeData[]> {
  readingMounts ??= si
    .fsSize()
    .then((table) => {
      mounts = { table, readAt: Date.now() };
      return table;
    })
    .finally(() => (readingMounts = undefined));
  return readingMounts;
}

function lastMountTable(): Promise<si.Systeminformation.FsSizeData[]> {
  return mounts ? Promise.resolve(mounts.table) : readMounts();
}

/** Called as an answer is made: the spawn happens once it has gone out. A failed read is tried again by a later call. */
function rereadOldMountTable(): void {
  if (mounts && Date.now() - mounts.readAt > MOUNTS_MAX_AGE_MS) setTimeout(() => readMounts().catch(() => undefined), 0).unref();
}

/**
 * Free space where a path lives (or would live), by statfs(2) of the path (its nearest existing
 * parent), and the longest mount point in `mounts` that contains it; the mount table's figures if
 * statfs fails.
 */
export async function diskOf(path: string, mounts: si.Systeminformation.FsSizeData[]): Promise<DiskSpace> {
  let existing = resolve(path);
  while (!existsSync(existing) && dirname(existing) !== existing) existing = dirname(existing);
  const containing = mounts
    .filter((m) => existing === m.mount || existing.startsWith(m.mount.endsWith(sep) ? m.mount : m.mount + sep))
    .sort((a, b) => b.mount.length - a.mount.length)[0];
  const mount = containing?.mount ?? '';
  return statfs(existing).then(
    (fs) => ({ path, mount, freeBytes: fs.bavail * fs.bsize, sizeBytes: fs.blocks * fs.bsize }),
    () => ({ path, mount, freeBytes: Number(containing?.available ?? 0), sizeBytes: Number(containing?.size ?? 0) }),
  );
}

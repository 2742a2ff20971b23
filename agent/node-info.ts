import { existsSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { dirname, resolve, sep } from 'node:path';
import si from 'systeminformation';
import type { CertificateExpiry, DiskSpace, GetNodeInfoResponse } from '../proto/gen/kbur/v1/agent.js';
import { KBUR_VERSION } from '../shared/version.js';
import type { LocalEtcd } from './etcd/member.js';
import { listLocalSnapshots } from './local-snapshots.js';

/** What the coordinator needs to know about this node before it plans anything. */
export async function nodeInfo(
  node: string,
  stateDir: string,
  etcd: LocalEtcd,
  opts: { countKeys: boolean; callerRole?: string; certificates?: () => Promise<CertificateExpiry[]> },
): Promise<GetNodeInfoResponse> {
  const [os, mounts, member, localSnapshots, certificates] = await Promise.all([
    osInfo(),
    lastMountTable(),
    etcd.status({ keyCount: opts.countKeys }),
    listLocalSnapshots(stateDir),
    opts.certificates?.() ?? [],
  ]);
  const [etcdDataDisk, stateDisk] = await Promise.all([diskOf(etcd.settings.dataDir || stateDir, mounts), diskOf(stateDir, mounts)]);
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
    uptimeSeconds: Math.floor(process.uptime()),
    callerRole: opts.callerRole ?? '',
    certificates,
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
 * The mount table as systeminformation last read it. Reading it spawns processes, one of them
 * synchronously (systeminformation runs `cat /proc/mounts` with execSync, which blocks the agent
 * for 5-20 ms). Mounts seldom change under a running agent, and a disk's free space comes from
 * statfs(2) on each call (diskOf), so node info takes the last table read. A call that finds it
 * more than a minute old has it read again REREAD_DELAY_MS later: not between a backup's node info
 * and its snapshot, which comes right after, and nothing spawned while no one asks. A mount is
 * named at most one call late. A call before the first read (see warmNodeInfo) waits for it.
 */
const MOUNTS_MAX_AGE_MS = 60_000;
const REREAD_DELAY_MS = 10_000;
let mounts: { table: si.Systeminformation.FsSizeData[]; readAt: number } | undefined;
let readingMounts: Promise<si.Systeminformation.FsSizeData[]> | undefined;
let rereadScheduled = false;

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

/**
 * The mount table read at most `maxAgeMs` ago, else read now: a restore's preflight asks each
 * agent once or twice within a second, and a second read (processes spawned, one synchronously)
 * would only find the same mounts.
 */
export function recentMountTable(maxAgeMs: number): Promise<si.Systeminformation.FsSizeData[]> {
  return mounts && Date.now() - mounts.readAt <= maxAgeMs ? Promise.resolve(mounts.table) : readMounts();
}

/** A failed read is tried again by a later call. */
function rereadOldMountTable(): void {
  if (!mounts || rereadScheduled || Date.now() - mounts.readAt <= MOUNTS_MAX_AGE_MS) return;
  rereadScheduled = true;
  setTimeout(() => {
    rereadScheduled = false;
    readMounts().catch(() => undefined);
  }, REREAD_DELAY_MS).unref();
}

/**
 * Called once the agent listens: asks for what node info needs from the OS (OS release, mount
 * table) before a caller does, so that the first backup after the agent starts does not wait for
 * the processes systeminformation spawns. A failed read is left to the first call, which retries.
 */
export function warmNodeInfo(): void {
  osInfo().catch(() => undefined);
  readMounts().catch(() => undefined);
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

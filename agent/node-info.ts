import { existsSync } from 'node:fs';
import { dirname, resolve, sep } from 'node:path';
import si from 'systeminformation';
import type { DiskSpace, GetNodeInfoResponse } from '../proto/gen/kbur/v1/agent.js';
import { KBUR_VERSION } from '../shared/version.js';
import type { LocalEtcd } from './etcd/member.js';
import { listLocalSnapshots } from './local-snapshots.js';

/** What the coordinator needs to know about this node before it plans anything. */
export async function nodeInfo(node: string, stateDir: string, etcd: LocalEtcd): Promise<GetNodeInfoResponse> {
  const [os, mounts, member, localSnapshots] = await Promise.all([
    osInfo(),
    si.fsSize(),
    etcd.status({ keyCount: true }),
    listLocalSnapshots(stateDir),
  ]);
  return {
    node,
    hostname: os.hostname,
    os: `${os.distro} ${os.release}`.trim(),
    kernel: os.kernel,
    agentVersion: KBUR_VERSION,
    etcdDataDisk: diskOf(etcd.settings.dataDir, mounts),
    stateDisk: diskOf(stateDir, mounts),
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

/** Free space where a path lives (or would live): the longest mount point that contains it. */
export function diskOf(path: string, mounts: si.Systeminformation.FsSizeData[]): DiskSpace {
  let existing = resolve(path);
  while (!existsSync(existing) && dirname(existing) !== existing) existing = dirname(existing);
  const containing = mounts
    .filter((m) => existing === m.mount || existing.startsWith(m.mount.endsWith(sep) ? m.mount : m.mount + sep))
    .sort((a, b) => b.mount.length - a.mount.length)[0];
  return {
    path,
    mount: containing?.mount ?? '',
    freeBytes: containing ? Number(containing.available) : 0,
    sizeBytes: containing ? Number(containing.size) : 0,
  };
}

import type { EtcdMemberStatus } from '../../proto/gen/kbur/v1/agent.js';
import { byCodeUnits } from '../../shared/order.js';

/** A follower this many raft entries behind the leader is still taken as in sync. */
export const MAX_RAFT_LAG = 1000;

export interface MemberView {
  node: string;
  etcd: EtcdMemberStatus | undefined;
  /** Why the node's agent gave no status (its GetNodeInfo error), when it gave none. */
  agentError?: string;
}

export interface SnapshotChoice {
  /** Nodes to snapshot from, best first: in-sync followers, then the leader. */
  order: string[];
  /** Nodes left out, and why. */
  skipped: { node: string; reason: string }[];
}

/**
 * Which member to snapshot. A follower spares the leader the load; it must agree on who leads and
 * be within MAX_RAFT_LAG entries of the leader, or its snapshot could miss recent writes.
 */
export function chooseSnapshotMembers(views: MemberView[]): SnapshotChoice {
  const skipped: SnapshotChoice['skipped'] = [];
  const healthy = views.filter((v) => {
    if (!v.etcd) skipped.push({ node: v.node, reason: v.agentError ?? 'agent gave no etcd status' });
    else if (!v.etcd.reachable) skipped.push({ node: v.node, reason: `etcd member not reachable: ${v.etcd.error}` });
    else if (!v.etcd.leaderId || v.etcd.leaderId === '0') skipped.push({ node: v.node, reason: 'etcd member has no leader' });
    else return true;
    return false;
  }) as (MemberView & { etcd: EtcdMemberStatus })[];

  const leader = healthy.find((v) => v.etcd.isLeader);
  const leaderId = leader?.etcd.memberId ?? majority(healthy.map((v) => v.etcd.leaderId));
  const leaderIndex = leader?.etcd.raftIndex ?? Math.max(0, ...healthy.map((v) => v.etcd.raftIndex));

  const followers: (MemberView & { etcd: EtcdMemberStatus })[] = [];
  for (const v of healthy) {
    if (v === leader) continue;
    if (v.etcd.leaderId !== leaderId) skipped.push({ node: v.node, reason: `sees leader ${v.etcd.leaderId}, the others see ${leaderId}` });
    else if (leaderIndex - v.etcd.raftIndex > MAX_RAFT_LAG)
      skipped.push({ node: v.node, reason: `${leaderIndex - v.etcd.raftIndex} raft entries behind the leader` });
    else followers.push(v);
  }
  followers.sort((a, b) => b.etcd.raftIndex - a.etcd.raftIndex || byCodeUnits(a.node, b.node));
  return { order: [...followers.map((v) => v.node), ...(leader ? [leader.node] : [])], skipped };
}

function majority(ids: string[]): string | undefined {
  const counts = new Map<string, number>();
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  return [...counts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
}

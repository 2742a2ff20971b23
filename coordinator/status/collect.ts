import { stat } from 'node:fs/promises';
import type { GetNodeInfoResponse } from '../../proto/gen/kbur/v1/agent.js';
import { asKburError, errorMessage } from '../../shared/errors.js';
import type { Manifest } from '../../shared/manifest.js';
import type { AgentClient } from '../agent-client.js';
import type { Context } from '../context.js';

/** A status answer must not wait for an agent that hangs: monitoring runs it every minute. */
const NODE_INFO_DEADLINE_MS = 5_000;

export interface AgentStatus {
  node: string;
  agent: string;
  reachable: boolean;
  error?: string;
  version?: string;
  /** The role this agent grants kbur's certificate. */
  role?: string;
  uptimeSeconds?: number;
}

export interface MemberStatus {
  /** The node whose agent reported it; absent for a member known only from another's member list. */
  node?: string;
  id: string;
  name: string;
  leader: boolean;
  /** Answers its agent, and knows a leader. */
  healthy: boolean;
  error?: string;
  dbSize?: number;
  dbSizeInUse?: number;
  revision?: number;
}

export interface BackupSummary {
  id: string;
  phase: string;
  finishedAt: string;
  ageSeconds: number;
  size: number;
}

export interface StatusReport {
  cluster: string;
  checkedAt: string;
  agents: AgentStatus[];
  members: MemberStatus[];
  /** Name of the member every reachable one agrees leads; absent when none does. */
  leader?: string;
  repository: { location: string; reachable: boolean; error?: string };
  backups: number;
  lastBackup?: BackupSummary;
  lastCompletedBackup?: BackupSummary;
  /** The newest backup whose last verification found it whole. */
  lastVerified?: { id: string; verifiedAt: string; ageSeconds: number };
  snapshotCopies: { node: string; copies: { backupId: string; size: number }[] }[];
  /** The certificate that expires first, per node that answered. */
  nearestCertificates: { node: string; file: string; subject: string; notAfter: string; secondsLeft: number; count: number }[];
}

/** Everything `kbur status` and `kbur check` report: every agent asked at once, then the repository read. */
export async function collectStatus(ctx: Context, agents: AgentClient[], now = Date.now()): Promise<StatusReport> {
  const [infos, repo] = await Promise.all([
    Promise.all(
      agents.map((a) =>
        a.getNodeInfo({ countKeys: false, certificates: true }, NODE_INFO_DEADLINE_MS).then(
          (info) => ({ agent: a, info }),
          (err: unknown) => ({ agent: a, error: asKburError(err).message }),
        ),
      ),
    ),
    readRepository(ctx, now),
  ]);
  const answered = infos.flatMap((r) => ('info' in r ? [{ node: r.agent.node.name, info: r.info }] : []));
  return {
    cluster: ctx.config.cluster,
    checkedAt: new Date(now).toISOString(),
    agents: infos.map((r) =>
      'info' in r
        ? {
            node: r.agent.node.name,
            agent: r.agent.node.agent,
            reachable: true,
            version: r.info.agentVersion,
            role: r.info.callerRole,
            uptimeSeconds: r.info.uptimeSeconds,
          }
        : { node: r.agent.node.name, agent: r.agent.node.agent, reachable: false, error: r.error },
    ),
    ...membersOf(answered),
    ...repo,
    snapshotCopies: answered.map(({ node, info }) => ({
      node,
      copies: info.localSnapshots.map((c) => ({ backupId: c.backupId, size: c.size })),
    })),
    nearestCertificates: answered.flatMap(({ node, info }) => {
      const first = [...info.certificates].sort((a, b) => a.notAfterSeconds - b.notAfterSeconds)[0];
      if (!first) return [];
      return [
        {
          node,
          file: first.file,
          subject: first.subject,
          notAfter: new Date(first.notAfterSeconds * 1000).toISOString(),
          secondsLeft: Math.round(first.notAfterSeconds - now / 1000),
          count: info.certificates.length,
        },
      ];
    }),
  };
}

/** Each agent reports its own member; members no agent reported come from the member lists, unhealthy. */
function membersOf(answered: { node: string; info: GetNodeInfoResponse }[]): { members: MemberStatus[]; leader?: string } {
  const members: MemberStatus[] = [];
  const leaders = new Set<string>();
  for (const { node, info } of answered) {
    const e = info.etcd;
    if (!e) continue;
    const hasLeader = e.reachable && Boolean(e.leaderId) && e.leaderId !== '0';
    if (hasLeader) leaders.add(e.leaderId);
    members.push({
      node,
      id: e.memberId,
      name: e.name,
      leader: e.isLeader,
      healthy: hasLeader,
      ...(e.reachable
        ? { dbSize: e.dbSize, dbSizeInUse: e.dbSizeInUse, revision: e.revision, ...(hasLeader ? {} : { error: 'knows no leader' }) }
        : { error: `not reachable: ${e.error}` }),
    });
  }
  const listed = answered.flatMap(({ info }) => info.etcd?.members ?? []);
  for (const m of listed) {
    if (members.some((x) => x.id === m.id || (!x.id && x.name === m.name))) continue;
    members.push({ id: m.id, name: m.name, leader: false, healthy: false, error: 'no agent reported this member' });
  }
  const leaderId = leaders.size === 1 ? [...leaders][0] : undefined;
  const leader = listed.find((m) => m.id === leaderId)?.name ?? members.find((m) => m.id === leaderId)?.name;
  for (const m of members) m.leader = m.leader || (leaderId !== undefined && m.id === leaderId);
  return leader ? { members, leader } : { members };
}

async function readRepository(
  ctx: Context,
  now: number,
): Promise<Pick<StatusReport, 'repository' | 'backups' | 'lastBackup' | 'lastCompletedBackup' | 'lastVerified'>> {
  const location = ctx.repository.location;
  try {
    // A local repository that is not there (an NFS share not mounted) lists as empty: say so instead.
    if (ctx.config.repository.type === 'local' && !(await stat(location)).isDirectory()) throw new Error(`${location} is not a directory`);
    const listing = await ctx.repository.listBackups(ctx.config.cluster);
    const complete = listing.flatMap((b) => (b.manifest ? [b.manifest] : [])).reverse();
    const summary = (m: Manifest | undefined): BackupSummary | undefined =>
      m && {
        id: m.id,
        phase: m.phase,
        finishedAt: m.finishedAt,
        ageSeconds: Math.round((now - Date.parse(m.finishedAt)) / 1000),
        size: m.artifacts.reduce((n, a) => n + a.size, 0),
      };
    let lastVerified: StatusReport['lastVerified'];
    for (const m of complete) {
      const v = await ctx.repository.readVerification(ctx.config.cluster, m.id);
      if (v?.ok) {
        lastVerified = { id: m.id, verifiedAt: v.verifiedAt, ageSeconds: Math.round((now - Date.parse(v.verifiedAt)) / 1000) };
        break;
      }
    }
    return {
      repository: { location, reachable: true },
      backups: complete.length,
      lastBackup: summary(complete[0]),
      lastCompletedBackup: summary(complete.find((m) => m.phase === 'Completed')),
      lastVerified,
    };
  } catch (err) {
    return { repository: { location, reachable: false, error: errorMessage(err) }, backups: 0 };
  }
}

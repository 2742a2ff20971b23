import { z } from 'zod';
import type { PrepareRestoreResponse } from '../../proto/gen/kbur/v1/agent.js';
import { asKburError } from '../../shared/errors.js';
import type { Manifest } from '../../shared/manifest.js';
import type { AgentClient } from '../agent-client.js';
import { mib } from '../backup/progress.js';
import { checkArtifact } from '../repository/check.js';
import type { Repository } from '../repository/repository.js';
import { identityProblem, plainDigest, type AgeIdentity } from '../repository/seal.js';

export const planSchema = z.object({
  restoreId: z.string(),
  backupId: z.string(),
  cluster: z.string(),
  token: z.string(),
  initialCluster: z.string(),
  bumpRevision: z.number().int(),
  /** Also put each node's /etc/kubernetes back from its archive. */
  withKubernetesDir: z.boolean(),
  snapshot: z.object({ path: z.string(), size: z.number(), sha256: z.string(), revision: z.number(), keyCount: z.number() }),
  nodes: z.array(
    z.object({
      node: z.string(),
      agent: z.string(),
      memberName: z.string(),
      peerUrls: z.array(z.string()),
      dataDir: z.string(),
      etcdMode: z.string(),
      restoreTool: z.string(),
      manifests: z.array(z.string()),
      /** Where the staged snapshot comes from: the copy the node keeps, or an upload from the repository. */
      snapshotSource: z.enum(['local-copy', 'upload']).default('upload'),
    }),
  ),
  notes: z.array(z.string()),
});
export type RestorePlan = z.infer<typeof planSchema>;

/** Added to the revision after restore (etcd's recovery guide for Kubernetes) where the tool can. */
export const REVISION_BUMP = 1_000_000_000;

export interface Preflight {
  plan: RestorePlan | undefined;
  problems: string[];
}

/**
 * Everything that can be checked before a restore changes anything: the backup is Completed and
 * its snapshot whole, every agent answers with the admin role and has the disk and the tool, and
 * every node runs a member of the backup's cluster.
 */
export async function preflight(opts: {
  repository: Repository;
  cluster: string;
  backupId: string;
  restoreId: string;
  agents: AgentClient[];
  withKubernetesDir: boolean;
  /** Also restores the backup's dumps (--dumps): they must be readable too. */
  withDumps?: boolean;
  /** Opens an encrypted backup: every artifact the restore needs must be encrypted to it. */
  identity?: AgeIdentity;
  /** A dry run also rereads the snapshot copies the nodes keep; a restore checks them when it stages. */
  dryRun: boolean;
  signal: AbortSignal;
}): Promise<Preflight> {
  const problems: string[] = [];
  const manifest = await opts.repository.readManifest(opts.cluster, opts.backupId);
  const snapshot = manifest.artifacts.find((a) => a.kind === 'etcd-snapshot');
  if (manifest.phase !== 'Completed')
    problems.push(
      `backup ${manifest.id} is ${manifest.phase}, not Completed: ${manifest.failures.map((f) => `${f.part}: ${f.message}`).join('; ')}`,
    );
  if (!snapshot || !manifest.etcd) return { plan: undefined, problems: [...problems, `backup ${manifest.id} has no etcd snapshot`] };
  // A missing or wrong identity is found here, from the manifest, before any agent is asked anything.
  const needed = manifest.artifacts.filter(
    (a) => a === snapshot || (opts.withKubernetesDir && a.kind === 'kubernetes-dir') || (opts.withDumps && a.kind === 'dump'),
  );
  const locked = [...new Set(needed.map((a) => identityProblem(a, opts.identity)).filter((p): p is string => p !== undefined))];
  if (locked.length) return { plan: undefined, problems: [...problems, ...locked] };
  const plain = plainDigest(snapshot);

  // The repository's copy is read only for nodes that keep no copy of their own: when every node
  // has one, the check stops as soon as the agents say so (a dry run checks both).
  const skipRepository = new AbortController();
  let checkedBeforeSkip = false;
  const repositoryCheck = checkArtifact(
    opts.repository,
    manifest,
    snapshot,
    AbortSignal.any([opts.signal, skipRepository.signal]),
    opts.identity,
  ).then((r) => {
    checkedBeforeSkip = !skipRepository.signal.aborted;
    return r;
  });
  const prepared = await Promise.all(
    opts.agents.map((a) =>
      a
        .prepareRestore({
          restoreId: opts.restoreId,
          snapshotSize: plain.size,
          backupId: manifest.id,
          snapshotSha256: plain.sha256,
          checkLocalCopy: opts.dryRun,
        })
        .catch((err: unknown) => asKburError(err)),
    ),
  );
  const everyNodeHasCopy = prepared.every((p) => !(p instanceof Error) && p.hasLocalCopy);
  if (everyNodeHasCopy && !opts.dryRun) skipRepository.abort();
  const snapshotCheck = await repositoryCheck;
  const notes: string[] = [];
  if (snapshotCheck.problem && !skipRepository.signal.aborted) problems.push(`snapshot ${snapshot.path}: ${snapshotCheck.problem}`);
  // Found before the agents answered: not needed by this restore, but worth knowing.
  else if (snapshotCheck.problem && checkedBeforeSkip)
    notes.push(
      `the repository's copy of the snapshot is damaged (${snapshotCheck.problem}); this restore uses the nodes' copies and does not need it; kbur verify ${manifest.id} records it`,
    );

  if (opts.withKubernetesDir) problems.push(...(await checkNodeArchives(opts, manifest)));
  const nodes: RestorePlan['nodes'] = [];
  prepared.forEach((p, i) => {
    const agent = opts.agents[i]!;
    if (p instanceof Error)
      return problems.push(p.code === 'PERMISSION_DENIED' ? `${p.message} (a restore needs the admin role)` : p.message);
    if (p.node !== agent.node.name) problems.push(`${agent.node.agent} answers as node ${p.node}, kbur.yaml calls it ${agent.node.name}`);
    problems.push(...p.problems.map((x) => `${agent.node.name}: ${x}`));
    const member = manifest.etcd!.members.find((m) => m.name === p.memberName);
    if (!member)
      return problems.push(
        `${agent.node.name} runs etcd member ${p.memberName}, which is not a member of the backup's cluster (${manifest.etcd!.members.map((m) => m.name).join(', ')})`,
      );
    nodes.push(toPlanNode(agent, p, member.peerUrls));
  });
  for (const p of prepared) {
    if (!(p instanceof Error) && p.localCopyProblem)
      notes.push(`${p.node}: its copy of the snapshot cannot be used (${p.localCopyProblem}); the snapshot is uploaded to it instead`);
  }
  if (everyNodeHasCopy && !opts.dryRun)
    notes.push("every node keeps a copy of this snapshot: each is staged from it and checked there; the repository's copy is not needed");
  for (const m of manifest.etcd.members) {
    if (!nodes.some((n) => n.memberName === m.name))
      notes.push(`member ${m.name} of the backup has no node in kbur.yaml: the restored cluster has ${nodes.length} members`);
  }
  const canBump = prepared.every((p) => !(p instanceof Error) && p.canBumpRevision);
  if (!canBump) {
    const tools = prepared
      .filter((p): p is PrepareRestoreResponse => !(p instanceof Error) && !p.canBumpRevision)
      .map((p) => `${p.node}: ${p.restoreTool} ${p.restoreToolVersion}`);
    notes.push(
      `the revision will not be bumped nor marked compacted (needs etcdutl >= 3.5.10 on every node; ${tools.join(', ')}): clients that watch may see revisions go back; restart controllers and kubelets after the restore, as etcd's recovery guide advises`,
    );
  }
  return {
    problems,
    plan: {
      restoreId: opts.restoreId,
      backupId: manifest.id,
      cluster: opts.cluster,
      token: `kbur-${opts.restoreId}`,
      initialCluster: nodes.map((n) => n.peerUrls.map((u) => `${n.memberName}=${u}`).join(',')).join(','),
      bumpRevision: canBump ? REVISION_BUMP : 0,
      withKubernetesDir: opts.withKubernetesDir,
      // What the agents stage and check: the snapshot as etcd wrote it, decrypted and decompressed.
      snapshot: {
        path: snapshot.path,
        size: plain.size,
        sha256: plain.sha256,
        revision: manifest.etcd.revision,
        keyCount: manifest.etcd.keyCount,
      },
      nodes,
      notes,
    },
  };
}

/** Every node of the plan has its archive in the backup, whole. */
async function checkNodeArchives(
  opts: { repository: Repository; cluster: string; agents: AgentClient[]; signal: AbortSignal; identity?: AgeIdentity },
  manifest: Manifest,
): Promise<string[]> {
  const problems: string[] = [];
  for (const agent of opts.agents) {
    const archive = manifest.artifacts.find((a) => a.kind === 'kubernetes-dir' && a.node === agent.node.name);
    if (!archive) {
      problems.push(`backup ${manifest.id} has no kubernetes dir archive of ${agent.node.name}: restore without --with-kubernetes-dir`);
      continue;
    }
    const { problem } = await checkArtifact(opts.repository, manifest, archive, opts.signal, opts.identity);
    if (problem) problems.push(`${archive.path}: ${problem}`);
  }
  return problems;
}

function toPlanNode(agent: AgentClient, p: PrepareRestoreResponse, peerUrls: string[]): RestorePlan['nodes'][number] {
  return {
    node: agent.node.name,
    agent: agent.node.agent,
    memberName: p.memberName,
    peerUrls,
    dataDir: p.dataDir,
    etcdMode: p.etcdMode,
    restoreTool: `${p.restoreTool} ${p.restoreToolVersion}`,
    manifests: p.manifests,
    snapshotSource: p.hasLocalCopy ? 'local-copy' : 'upload',
  };
}

/** The plan as an operator reads it before saying yes. */
export function describePlan(plan: RestorePlan, manifest?: Pick<Manifest, 'startedAt'>): string {
  const lines = [
    `Restore ${plan.restoreId} of cluster ${plan.cluster} from backup ${plan.backupId}${manifest ? ` (taken ${manifest.startedAt})` : ''}`,
    `  snapshot: ${plan.snapshot.path}, ${mib(plan.snapshot.size)}, revision ${plan.snapshot.revision}, ${plan.snapshot.keyCount} keys`,
    `  new cluster token: ${plan.token}`,
    `  revision bump: ${plan.bumpRevision ? `+${plan.bumpRevision}, marked compacted` : 'no'}`,
    '  on every node, in this order:',
    "    1. stage the snapshot in the agent's state dir (from the node's own copy, or uploaded) and check it there",
    '    2. stop: move out of manifests/ the control plane, then etcd (or stop the etcd unit); wait until etcd is gone',
    '    3. restore the member from the snapshot into a new dir; move the data dir aside as <dataDir>.kbur-<restore-id> (never deleted); put the restored one in place',
    ...(plan.withKubernetesDir
      ? [
          "       then put back /etc/kubernetes from the node's archive; files it replaces are moved aside to <kubernetesDir>.kbur-<restore-id>/",
        ]
      : []),
    '    4. start etcd; wait for quorum; verify revision, key count and member list',
    '    5. put the control-plane manifests back',
    '  nodes:',
  ];
  for (const n of plan.nodes) {
    lines.push(
      `    ${n.node} (${n.agent}): member ${n.memberName}, peers ${n.peerUrls.join(',')}, ${n.etcdMode}, tool ${n.restoreTool}`,
      `      snapshot: ${n.snapshotSource === 'local-copy' ? 'the copy this node keeps' : 'uploaded from the repository'}`,
      `      data dir ${n.dataDir} -> moved aside to ${n.dataDir}.kbur-${plan.restoreId}`,
      `      stopped and started: ${n.manifests.join(', ') || '(etcd unit)'}`,
    );
  }
  for (const note of plan.notes) lines.push(`  note: ${note}`);
  return lines.join('\n');
}

import { z } from 'zod';
import type { PrepareRestoreResponse } from '../../proto/gen/kbur/v1/agent.js';
import { asKburError, type KburError } from '../../shared/errors.js';
import type { Artifact, Manifest } from '../../shared/manifest.js';
import type { AgentClient } from '../agent-client.js';
import { byCodeUnits } from '../../shared/order.js';
import { mib } from '../backup/progress.js';
import { checkArtifact } from '../repository/check.js';
import type { Repository } from '../repository/repository.js';
import { replaceAddresses } from '../../shared/addresses.js';
import { memberRestoreProblem } from '../../shared/etcd-membership.js';
import { asideDataDir, kburDir } from '../../shared/restore-names.js';
import type { Target } from './targets.js';
import { ARCHIVED_ETCD_MANIFEST, readNodeArchive, type NodeArchiveRead } from './node-archive.js';
import { identityProblem, plainDigest, type AgeIdentity } from '../repository/seal.js';

export const planSchema = z
  .object({
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
        /** The node had no etcd member of its own (reset, or new): it is rebuilt from its archive. */
        rebuild: z.boolean().default(false),
        /** Its /etc/kubernetes is put back from its archive (--with-kubernetes-dir, or a rebuild). */
        restoreKubernetesDir: z.boolean().default(false),
        /** What the agent found there before the restore, and where the member's settings came from. */
        found: z.array(z.string()).default([]),
        settingsFrom: z.string().default(''),
        /** --to: the backup node whose archive and member this node gets, and what changes in its archive. */
        archiveFrom: z.string().default(''),
        changes: z.array(z.string()).default([]),
      }),
    ),
    notes: z.array(z.string()),
    /** Members of the backup this restore leaves out (--nodes, or no node in kbur.yaml): they join later. */
    leftOut: z.array(z.string()).default([]),
    /** --to: old node address -> new, in etcd's URLs, certificates and configuration files. */
    readdress: z.array(z.object({ from: z.string(), to: z.string() })).default([]),
  })
  .superRefine((plan, ctx) => {
    // The plan is read back from the repository on --resume: what goes to etcdutl is checked here, before any step.
    for (const n of plan.nodes) {
      const message = memberRestoreProblem({
        name: n.memberName,
        initialCluster: plan.initialCluster,
        initialClusterToken: plan.token,
        initialAdvertisePeerUrls: n.peerUrls,
      });
      if (message) ctx.addIssue({ code: 'custom', path: ['nodes', n.node], message });
    }
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
  /** --to: the nodes of the backup come back at new addresses, on the agents named here. */
  targets?: Target[];
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
  const members = manifest.etcd.members;
  const readdress: RestorePlan['readdress'] = [];
  for (const t of opts.targets ?? []) {
    const member = members.find((m) => m.name === t.from);
    const from = member?.peerUrls[0] ? new URL(member.peerUrls[0]).hostname : undefined;
    if (!from)
      problems.push(
        `--to: node ${t.from} has no etcd member of that name in backup ${manifest.id} (${members.map((m) => m.name).join(', ')})`,
      );
    else readdress.push({ from, to: t.address });
  }
  const addressMap = new Map(readdress.map((r) => [r.from, r.to]));
  const archiveFrom = (node: string): string => opts.targets?.find((t) => t.name === node)?.from ?? node;

  // Node archives are read once each (sha256 checked, the etcd manifest kept): with
  // --with-kubernetes-dir every node's, before its agent is asked; else only those the answers call for.
  const archives = new Map<string, Promise<{ artifact: Artifact; read: NodeArchiveRead } | undefined>>();
  const archiveOf = (node: string): Promise<{ artifact: Artifact; read: NodeArchiveRead } | undefined> => {
    if (!archives.has(node)) {
      const artifact = manifest.artifacts.find((a) => a.kind === 'kubernetes-dir' && a.node === node);
      archives.set(
        node,
        artifact
          ? readNodeArchive(opts.repository, manifest, artifact, opts.signal, [...addressMap.keys()], opts.identity).then((read) => ({
              artifact,
              read,
            }))
          : Promise.resolve(undefined),
      );
    }
    return archives.get(node)!;
  };
  // With --with-kubernetes-dir every archive is read anyway: each agent gets its archive's etcd
  // manifest with its first question, and a reset node needs no second one.
  const firstManifest = async (a: AgentClient): Promise<string> => {
    if (!opts.withKubernetesDir) return '';
    const archive = await archiveOf(archiveFrom(a.node.name));
    return archive && !archive.read.problem ? (archive.read.etcdManifest ?? '') : '';
  };
  const prepare = (a: AgentClient, archivedEtcdManifest = ''): Promise<PrepareRestoreResponse | KburError> =>
    a
      .prepareRestore({
        restoreId: opts.restoreId,
        snapshotSize: plain.size,
        backupId: manifest.id,
        snapshotSha256: plain.sha256,
        checkLocalCopy: opts.dryRun,
        archivedEtcdManifest,
      })
      .catch((err: unknown) => asKburError(err));
  const sent: string[] = opts.agents.map(() => '');
  const prepared = await Promise.all(
    opts.agents.map(async (a, i) => {
      sent[i] = await firstManifest(a);
      return prepare(a, sent[i]);
    }),
  );
  // The repository's copy is read only when a node keeps no copy of its own (a dry run checks both):
  // the agents' first answers say, and nothing reads it meanwhile.
  const everyNodeHasCopy = prepared.every((p) => !(p instanceof Error) && p.hasLocalCopy);
  // A sealed snapshot is decrypted and decompressed once, when it is staged: that stream checks
  // its plaintext sha256 and etcd's hash, and the node its sha256, before anything is stopped.
  // Here its stored bytes and its age header (the identity opens it) are enough; a dry run checks all.
  const repositoryCheck =
    everyNodeHasCopy && !opts.dryRun
      ? undefined
      : checkArtifact(opts.repository, manifest, snapshot, opts.signal, opts.identity, { payload: opts.dryRun });
  const rebuildProblems = await Promise.all(
    prepared.map(async (p, i) => {
      const agent = opts.agents[i]!;
      if (!(p instanceof Error) && !p.needsArchive && opts.targets)
        return [
          `${agent.node.name}: --to restores onto machines without a control plane, and this one runs etcd member ${p.memberName}: reset it first (kubeadm reset), or restore without --to`,
        ];
      if (p instanceof Error || !p.needsArchive) return [];
      const node = archiveFrom(agent.node.name);
      const archive = await archiveOf(node);
      if (!archive)
        return [
          `${node}: no etcd member here (${p.found.join('; ')}): a reset or new node is rebuilt from its archive, and backup ${manifest.id} has none of ${node}; restore a backup that has one, or leave ${node} out of kbur.yaml and join it later (kubeadm join --control-plane)`,
        ];
      if (archive.read.problem) return [`${archive.artifact.path}: ${archive.read.problem}`];
      if (!archive.read.etcdManifest)
        return [
          `${node}: no etcd member here, and its archive ${archive.artifact.path} has no ${ARCHIVED_ETCD_MANIFEST} to rebuild it from`,
        ];
      if (sent[i] !== archive.read.etcdManifest) prepared[i] = await prepare(agent, archive.read.etcdManifest);
      return [];
    }),
  );
  problems.push(...rebuildProblems.flat());
  const snapshotCheck = await repositoryCheck;
  const notes: string[] = [];
  if (snapshotCheck?.problem) problems.push(`snapshot ${snapshot.path}: ${snapshotCheck.problem}`);

  if (opts.withKubernetesDir)
    problems.push(
      ...(await checkNodeArchives(
        opts.agents.map((a) => archiveFrom(a.node.name)),
        manifest,
        archiveOf,
      )),
    );
  const nodes: RestorePlan['nodes'] = [];
  prepared.forEach((p, i) => {
    const agent = opts.agents[i]!;
    if (p instanceof Error)
      return problems.push(p.code === 'PERMISSION_DENIED' ? `${p.message} (a restore needs the admin role)` : p.message);
    if (p.node !== agent.node.name) problems.push(`${agent.node.agent} answers as node ${p.node}, kbur.yaml calls it ${agent.node.name}`);
    problems.push(...p.problems.map((x) => `${agent.node.name}: ${x}`));
    // Said above: a node without a member whose archive could not describe one.
    if (p.needsArchive && !p.memberName) return;
    const member = manifest.etcd!.members.find((m) => m.name === p.memberName);
    if (!member)
      return problems.push(
        `${agent.node.name} runs etcd member ${p.memberName}, which is not a member of the backup's cluster (${manifest.etcd!.members.map((m) => m.name).join(', ')})`,
      );
    nodes.push({
      ...toPlanNode(
        agent,
        p,
        member.peerUrls.map((u) => replaceAddresses(u, addressMap)),
        opts.withKubernetesDir,
      ),
      ...(opts.targets ? { archiveFrom: archiveFrom(agent.node.name) } : {}),
    });
  });
  // What --to changes in each archive, read from the archives themselves.
  for (const n of opts.targets ? nodes : []) {
    const naming = (await archiveOf(n.archiveFrom))?.read.naming;
    n.changes = [
      ...(naming?.certs ?? []).map((c) => `issue again (new address in its subjectAltName): ${c}`),
      ...(naming?.files ?? []).map((f) => `rewrite: ${f}`),
    ];
  }
  for (const p of prepared) {
    if (!(p instanceof Error) && p.localCopyProblem)
      notes.push(`${p.node}: its copy of the snapshot cannot be used (${p.localCopyProblem}); the snapshot is uploaded to it instead`);
  }
  if (everyNodeHasCopy && !opts.dryRun)
    notes.push("every node keeps a copy of this snapshot: each is staged from it and checked there; the repository's copy is not needed");
  const leftOut = manifest.etcd.members
    .filter((m) => !nodes.some((n) => n.memberName === m.name))
    .map((m) => m.name)
    .sort(byCodeUnits);
  if (prepared.length > 0 && nodes.length === 0 && problems.length === 0) problems.push('no member of the backup is left to restore');
  const canBump = prepared.every((p) => !(p instanceof Error) && p.canBumpRevision);
  if (!canBump) {
    const tools = prepared
      .filter((p): p is PrepareRestoreResponse => !(p instanceof Error) && !p.canBumpRevision)
      .map((p) => `${p.node}: ${p.restoreTool} ${p.restoreToolVersion}`);
    notes.push(
      `the revision will not be bumped nor marked compacted (needs etcdutl >= 3.5.10 on every node; ${tools.join(', ')}): clients that watch may see revisions go back; restart controllers and kubelets after the restore, as etcd's recovery guide advises`,
    );
  }
  const token = `kbur-${opts.restoreId}`;
  const initialCluster = nodes.map((n) => n.peerUrls.map((u) => `${n.memberName}=${u}`).join(',')).join(',');
  // Member names and peer URLs come from the backup and the agents: refused here, before any node is touched.
  for (const n of nodes) {
    const problem = memberRestoreProblem({
      name: n.memberName,
      initialCluster,
      initialClusterToken: token,
      initialAdvertisePeerUrls: n.peerUrls,
    });
    if (problem) problems.push(`${n.node}: ${problem}`);
  }
  return {
    problems,
    plan: {
      restoreId: opts.restoreId,
      backupId: manifest.id,
      cluster: opts.cluster,
      token,
      initialCluster,
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
      leftOut,
      readdress,
    },
  };
}

/** Every node of the plan has its archive in the backup, whole. */
async function checkNodeArchives(
  nodes: string[],
  manifest: Manifest,
  archiveOf: (node: string) => Promise<{ artifact: Artifact; read: NodeArchiveRead } | undefined>,
): Promise<string[]> {
  const problems: string[] = [];
  for (const node of nodes) {
    const archive = await archiveOf(node);
    if (!archive) problems.push(`backup ${manifest.id} has no kubernetes dir archive of ${node}: restore without --with-kubernetes-dir`);
    else if (archive.read.problem) problems.push(`${archive.artifact.path}: ${archive.read.problem}`);
  }
  return [...new Set(problems)];
}

function toPlanNode(
  agent: AgentClient,
  p: PrepareRestoreResponse,
  peerUrls: string[],
  withKubernetesDir: boolean,
): RestorePlan['nodes'][number] {
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
    archiveFrom: '',
    changes: [],
    rebuild: p.needsArchive,
    restoreKubernetesDir: withKubernetesDir || p.needsArchive,
    found: p.found,
    settingsFrom: p.settingsFrom,
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
    ...(plan.nodes.some((n) => n.restoreKubernetesDir)
      ? [
          `    3. where said below: put back /etc/kubernetes from the node's archive, its static pod manifests held back; files it replaces are moved aside to ${kburDir('<kubernetesDir>', 'aside', '<restore-id>')}/`,
        ]
      : []),
    `    4. restore the member from the snapshot into a new dir; move the data dir aside as ${asideDataDir('<dataDir>', '<restore-id>')} (never deleted); put the restored one in place`,
    '    5. start etcd (etcd.yaml into manifests/: the kubelet starts it); wait for quorum; verify revision, key count and member list',
    '    6. put the control-plane manifests back',
    '  nodes:',
  ];
  for (const n of plan.nodes) {
    lines.push(
      `    ${n.node} (${n.agent}): member ${n.memberName}, peers ${n.peerUrls.join(',')}, ${n.etcdMode}, tool ${n.restoreTool}`,
      `      snapshot: ${n.snapshotSource === 'local-copy' ? 'the copy this node keeps' : 'uploaded from the repository'}`,
      `      data dir ${n.dataDir} -> moved aside to ${asideDataDir(n.dataDir, plan.restoreId)}`,
      `      stopped and started: ${n.manifests.join(', ') || (n.etcdMode === 'systemd' ? '(etcd unit)' : 'nothing runs here')}`,
    );
    if (n.found.length) lines.push(`      found: ${n.found.join('; ')}`);
    if (n.rebuild)
      lines.push(
        `      REBUILD: no etcd member here; its member's settings come from the etcd manifest of its archive; /etc/kubernetes is put back from the archive (manifests held back), then the data dir, then etcd.yaml into manifests/, then the other manifests`,
      );
    else if (n.restoreKubernetesDir) lines.push("      /etc/kubernetes: put back from the node's archive");
    if (n.archiveFrom && n.archiveFrom !== n.node) lines.push(`      from the backup's node ${n.archiveFrom}: its archive and its member`);
    for (const c of n.changes) lines.push(`      --to: ${c}`);
  }
  if (plan.readdress.length)
    lines.push(
      `  new addresses (--to): ${plan.readdress.map((r) => `${r.from} -> ${r.to}`).join(', ')}; every file changed is moved aside first where the node has one`,
    );
  for (const note of plan.notes) lines.push(`  note: ${note}`);
  if (plan.leftOut.length) {
    lines.push(
      `  left out: member${plan.leftOut.length > 1 ? 's' : ''} ${plan.leftOut.join(', ')} of the backup: the restored cluster has ${plan.nodes.length} member${plan.nodes.length > 1 ? 's' : ''} (${plan.nodes.map((n) => n.memberName).join(', ')})`,
      '  next, for each node left out, once its machine is there (stop any etcd still running on it first):',
      '    - kubeadm join <endpoint> --control-plane ...: it adds its etcd member to this cluster, as for any new master;',
      '    - or, when every node is back, a later kbur restore of a backup taken from the restored cluster, with every node.',
    );
  }
  return lines.join('\n');
}

import { KburError, asKburError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import type { GetNodeInfoResponse, StageSnapshotHeader } from '../../proto/gen/kbur/v1/agent.js';
import type { AgentClient } from '../agent-client.js';
import { FanOut } from '../fan-out.js';
import type { Repository } from '../repository/repository.js';
import { openPlain, plainDigest, type AgeIdentity } from '../repository/seal.js';
import type { RestorePlan } from './plan.js';
import { STEPS, type Journal, type StepName } from './journal.js';

export interface RestoreRun {
  journal: Journal;
  agents: AgentClient[];
  repository: Repository;
  /** Opens an encrypted backup: artifacts are decrypted here and sent to the agents as they were made. */
  identity?: AgeIdentity;
  log: Logger;
  signal: AbortSignal;
  /** One line per event, for the operator. */
  say: (line: string) => void;
  quorumTimeoutMs?: number;
  /** Nodes whose snapshot this run staged (and so checked moments ago); filled by the stage step. */
  stagedNow?: Set<string>;
}

/**
 * Runs (or resumes) a restore from its journal: every step not yet done, in order, on every node.
 * Steps are idempotent on the agents, so a step that started but did not finish runs again.
 */
export async function executeRestore(r: RestoreRun): Promise<void> {
  const { journal } = r;
  await journal.setStatus('running');
  const run = { ...r, stagedNow: new Set<string>() };
  try {
    for (const step of STEPS) {
      await runStep(run, step);
      failpoint(step);
    }
    await journal.setStatus('completed');
  } catch (err) {
    await journal.setStatus('failed');
    throw err;
  }
}

/** The agent of a node of the plan. */
function agentOf(r: RestoreRun, node: string): AgentClient {
  const a = r.agents.find((x) => x.node.name === node);
  if (!a) {
    throw new KburError('INVALID_CONFIG', `node ${node} of the restore plan is not in kbur.yaml`, {
      hint: 'resume with the kbur.yaml the restore started with',
    });
  }
  return a;
}

/**
 * Node info of every node of the plan, in plan order; an agent that does not answer is its error.
 * Keys are counted only for the final check: the polls while etcd comes back do not need them.
 */
function nodeInfos(r: RestoreRun, opts: { countKeys: boolean }): Promise<(GetNodeInfoResponse | KburError)[]> {
  return Promise.all(
    r.journal.plan.nodes.map((n) =>
      agentOf(r, n.node)
        .getNodeInfo(opts)
        .catch((err: unknown) => asKburError(err)),
    ),
  );
}

/** Polls the planned nodes every 500 ms until `check` is satisfied, or gives up with `timedOut(last problem)`. */
async function pollNodes<T>(
  r: RestoreRun,
  check: (infos: (GetNodeInfoResponse | KburError)[]) => { ok: T } | { problem: string },
  timedOut: (problem: string) => KburError,
): Promise<T> {
  const deadline = Date.now() + (r.quorumTimeoutMs ?? 120_000);
  for (;;) {
    r.signal.throwIfAborted();
    const result = check(await nodeInfos(r, { countKeys: false }));
    if ('ok' in result) return result.ok;
    if (Date.now() > deadline) throw timedOut(result.problem);
    await new Promise((res) => setTimeout(res, 500));
  }
}

async function runStep(r: RestoreRun, step: StepName): Promise<void> {
  const plan = r.journal.plan;
  const agent = (node: string): AgentClient => agentOf(r, node);
  switch (step) {
    case 'stage': {
      // Nodes that keep a copy of the snapshot stage from it; any whose copy turns out missing or
      // damaged joins the upload. The upload reads the repository's copy once for every node.
      const fromCopy = plan.nodes.filter((n) => n.snapshotSource === 'local-copy' && !r.journal.isDone(step, n.node));
      await Promise.all(fromCopy.map((n) => stageFromCopy(r, n.node)));
      const rest = plan.nodes.filter((n) => !r.journal.isDone(step, n.node)).map((n) => n.node);
      if (rest.length === 0) return;
      const manifest = await r.repository.readManifest(plan.cluster, plan.backupId);
      const snapshot = manifest.artifacts.find((a) => a.kind === 'etcd-snapshot' && a.path === plan.snapshot.path);
      if (!snapshot) throw new KburError('DATA_LOSS', `backup ${plan.backupId} no longer lists its snapshot ${plan.snapshot.path}`);
      const fan = new FanOut(await openPlain(r.repository, manifest, snapshot, r.identity), rest);
      try {
        return await perNode(r, step, async (node) => {
          const got = await fan.send(node, (data) => agent(node).stageSnapshot(stageHeader(plan), data, r.signal));
          r.stagedNow?.add(node);
          return [`staged ${got.path} (${got.size} bytes uploaded, sha256 checked on the node)`];
        });
      } finally {
        fan.close();
      }
    }
    case 'verify-staged':
      // A copy staged by this run was checked moments ago; one staged by an interrupted run is reread.
      return perNode(r, step, async (node) =>
        r.stagedNow?.has(node)
          ? ['checked as it was staged, in this run']
          : [`staged copy rechecked: ${(await agent(node).verifyStagedSnapshot(plan.restoreId)).sha256}`],
      );
    case 'stop':
      // The leader last: stopped while its followers stop, it waits for a leadership transfer that cannot happen.
      return perNode(
        r,
        step,
        async (node) => (await agent(node).restoreStep('StopControlPlane', plan.restoreId)).done,
        await leaderLast(r),
      );
    case 'restore':
      return perNode(r, step, async (node) => {
        const n = plan.nodes.find((x) => x.node === node)!;
        const res = await agent(node).restoreEtcdMember({
          restoreId: plan.restoreId,
          name: n.memberName,
          initialAdvertisePeerUrls: n.peerUrls,
          initialCluster: plan.initialCluster,
          initialClusterToken: plan.token,
          bumpRevision: plan.bumpRevision,
        });
        return res.done;
      });
    case 'restore-kubernetes': {
      // Before the member: a rebuilt node learns its member's settings from the archive's etcd manifest.
      const nodes = plan.nodes.filter((n) => n.restoreKubernetesDir || plan.withKubernetesDir).map((n) => n.node);
      if (nodes.length === 0) return;
      const manifest = await r.repository.readManifest(plan.cluster, plan.backupId);
      return perNode(
        r,
        step,
        async (node) => {
          const from = plan.nodes.find((n) => n.node === node)?.archiveFrom || node;
          const archive = manifest.artifacts.find((a) => a.kind === 'kubernetes-dir' && a.node === from)!;
          const stream = await openPlain(r.repository, manifest, archive, r.identity);
          return (
            await agent(node).restoreKubernetesDir(
              { restoreId: plan.restoreId, ...plainDigest(archive), localCopy: '', readdress: plan.readdress },
              stream,
              r.signal,
            )
          ).done;
        },
        [nodes],
      );
    }
    case 'start-etcd':
      return perNode(r, step, async (node) => (await agent(node).restoreStep('StartEtcd', plan.restoreId)).done);
    case 'wait-quorum':
      return clusterStep(r, step, () => waitForQuorum(r));
    case 'verify':
      return clusterStep(r, step, () => verifyRestored(r));
    case 'start-control-plane':
      return perNode(r, step, async (node) => (await agent(node).restoreStep('StartControlPlane', plan.restoreId)).done);
  }
}

function stageHeader(plan: RestorePlan, localCopy = ''): StageSnapshotHeader {
  return { restoreId: plan.restoreId, size: plan.snapshot.size, sha256: plan.snapshot.sha256, localCopy, readdress: [] };
}

/** Stages one node's snapshot from the copy it keeps; journaled; a failure is said and left to the upload. */
async function stageFromCopy(r: RestoreRun, node: string): Promise<void> {
  const plan = r.journal.plan;
  await r.journal.begin('stage', node);
  try {
    const got = await agentOf(r, node).stageSnapshot(stageHeader(plan, plan.backupId), emptyData(), r.signal);
    const detail = [`staged ${got.path} from the copy this node keeps (sha256 checked on the node)`];
    await r.journal.done('stage', node, detail);
    r.stagedNow?.add(node);
    r.say(`stage ${node}: ${detail[0]}`);
  } catch (err) {
    const e = asKburError(err);
    if (e.code === 'CANCELLED' || r.signal.aborted) throw e;
    await r.journal.fail('stage', node, e.message);
    r.say(`stage ${node}: its copy cannot be used (${e.message}); uploading the snapshot from the repository instead`);
  }
}

async function* emptyData(): AsyncGenerator<Buffer> {}

/** Runs a step on every node where it is not done yet, in parallel (or in `order`'s groups); all must succeed. */
async function perNode(r: RestoreRun, step: StepName, work: (node: string) => Promise<string[]>, order?: string[][]): Promise<void> {
  const groups = order ?? [r.journal.plan.nodes.map((n) => n.node)];
  for (const group of groups) {
    const results = await Promise.allSettled(
      group
        .filter((node) => !r.journal.isDone(step, node))
        .map(async (node) => {
          await r.journal.begin(step, node);
          try {
            const detail = await work(node);
            await r.journal.done(step, node, detail);
            r.say(`${step} ${node}: ${detail.length ? detail.join('; ') : 'already done'}`);
          } catch (err) {
            const e = asKburError(err);
            await r.journal.fail(step, node, e.message);
            r.say(`${step} ${node}: FAILED: ${e.message}`);
            throw e;
          }
        }),
    );
    const failed = results.find((x): x is PromiseRejectedResult => x.status === 'rejected');
    if (failed) throw failed.reason;
  }
}

async function clusterStep(r: RestoreRun, step: StepName, work: () => Promise<string[]>): Promise<void> {
  if (r.journal.isDone(step, '*')) return;
  await r.journal.begin(step, '*');
  try {
    const detail = await work();
    await r.journal.done(step, '*', detail);
    r.say(`${step}: ${detail.join('; ')}`);
  } catch (err) {
    const e = asKburError(err);
    await r.journal.fail(step, '*', e.message);
    r.say(`${step}: FAILED: ${e.message}`);
    throw e;
  }
}

async function leaderLast(r: RestoreRun): Promise<string[][]> {
  const nodes = r.journal.plan.nodes.map((n) => n.node);
  const infos = await nodeInfos(r, { countKeys: false });
  const leader = nodes[infos.findIndex((i) => !(i instanceof Error) && i.etcd?.isLeader)];
  return leader ? [nodes.filter((n) => n !== leader), [leader]] : [nodes];
}

/** Every planned member answers, all see the same leader and the planned member list. */
function waitForQuorum(r: RestoreRun): Promise<string[]> {
  const plan = r.journal.plan;
  const planned = plan.nodes.map((n) => n.memberName).sort();
  return pollNodes<string[]>(
    r,
    (infos) => {
      const problems: string[] = [];
      const leaders = new Set<string>();
      infos.forEach((info, i) => {
        const node = plan.nodes[i]!.node;
        if (info instanceof Error) return problems.push(info.message);
        const e = info.etcd;
        if (!e?.reachable) return problems.push(`${node}: etcd not answering: ${e?.error}`);
        if (!e.leaderId || e.leaderId === '0') return problems.push(`${node}: no leader yet`);
        leaders.add(e.leaderId);
        const names = e.members.map((m) => m.name).sort();
        if (names.join() !== planned.join()) problems.push(`${node}: members ${names.join(',')}, planned ${planned.join(',')}`);
      });
      if (leaders.size > 1) problems.push(`members disagree on the leader: ${[...leaders].join(', ')}`);
      if (problems.length) return { problem: problems.join('; ') };
      return { ok: [`${plan.nodes.length} members healthy, leader ${[...leaders][0]}, members ${planned.join(', ')}`] };
    },
    (problem) =>
      new KburError('UNAVAILABLE', `etcd did not come back with quorum: ${problem}`, {
        hint: `look at etcd's logs on the nodes; then kbur restore --resume ${plan.restoreId}, or --rollback ${plan.restoreId} to put the old data back`,
      }),
  );
}

/** Revision at least the backup's (plus the bump), key count equal to the backup's at that revision. */
async function verifyRestored(r: RestoreRun): Promise<string[]> {
  const plan = r.journal.plan;
  const infos = (await nodeInfos(r, { countKeys: true })).map((info) => {
    if (info instanceof Error) throw info;
    return info;
  });
  const problems: string[] = [];
  const detail: string[] = [];
  const want = plan.snapshot.revision + plan.bumpRevision;
  for (const info of infos) {
    const e = info.etcd!;
    if (e.revision < want) problems.push(`${info.node}: revision ${e.revision}, below the backup's ${want}`);
    // At the very revision of the backup the keyspace must be exactly the backup's.
    if (e.revision === want && e.keyCount !== plan.snapshot.keyCount)
      problems.push(`${info.node}: ${e.keyCount} keys, the backup had ${plan.snapshot.keyCount}`);
  }
  const first = infos[0]!.etcd!;
  detail.push(
    `revision ${first.revision} (backup ${plan.snapshot.revision}${plan.bumpRevision ? ` + ${plan.bumpRevision}` : ''})`,
    `${first.keyCount} keys (backup ${plan.snapshot.keyCount})`,
  );
  if (problems.length) {
    throw new KburError('DATA_LOSS', `the restored cluster does not match the backup: ${problems.join('; ')}`, {
      hint: `etcd runs on the restored data but the control plane was not started; inspect it, then kbur restore --rollback ${plan.restoreId} or --resume`,
    });
  }
  return detail;
}

/** Puts every node back as it was before the restore, from the journal. */
export async function executeRollback(r: RestoreRun): Promise<void> {
  const { journal } = r;
  if (!journal.hasStarted('stop')) {
    r.say('rollback: the restore never stopped anything; nothing to put back');
    await journal.setStatus('rolled-back');
    return;
  }
  await journal.setStatus('rolling-back');
  const nodes = journal.plan.nodes.map((n) => n.node);
  const results = await Promise.allSettled(
    nodes.map(async (node) => {
      const res = await agentOf(r, node).restoreStep('RollbackRestore', journal.plan.restoreId);
      r.say(`rollback ${node}: ${res.done.length ? res.done.join('; ') : 'already done'}`);
    }),
  );
  const failed = results.find((x): x is PromiseRejectedResult => x.status === 'rejected');
  if (failed) {
    await journal.setStatus('failed');
    throw failed.reason;
  }
  // The members restarted on their old data dirs: the old cluster, old member list. Nodes the
  // restore found reset are left so, without etcd.
  const detail = await waitForOldQuorum(r, new Set(journal.plan.nodes.filter((n) => !n.rebuild).map((n) => n.node)));
  r.say(`rollback: ${detail}`);
  await journal.setStatus('rolled-back');
}

async function waitForOldQuorum(r: RestoreRun, nodes: Set<string>): Promise<string> {
  if (nodes.size === 0) return 'every node was found reset and is left so, without etcd';
  return pollNodes<string>(
    r,
    (all) => {
      const infos = all.filter((_, i) => nodes.has(r.journal.plan.nodes[i]!.node));
      const ok = infos.filter(
        (i): i is GetNodeInfoResponse => !(i instanceof Error) && Boolean(i.etcd?.reachable && i.etcd.leaderId && i.etcd.leaderId !== '0'),
      );
      if (ok.length === infos.length) return { ok: `${ok.length} members back on their previous data, revision ${ok[0]!.etcd!.revision}` };
      return { problem: `after the rollback only ${ok.length} of ${infos.length} members answer with a leader` };
    },
    (problem) =>
      new KburError('UNAVAILABLE', problem, { hint: "the previous data dirs are back in place; look at etcd's logs on the nodes" }),
  );
}

/** A test hook, like etcd's gofail: KBUR_FAILPOINT=crash-after:<step> kills the coordinator right after that step. */
function failpoint(step: StepName): void {
  if (process.env.KBUR_FAILPOINT === `crash-after:${step}`) process.kill(process.pid, 'SIGKILL');
}

import type { WriteStream } from 'node:fs';
import type { ArchiveTrailer, GetNodeInfoResponse, SnapshotHeader, SnapshotTrailer } from '../../proto/gen/kbur/v1/agent.js';
import { KburError, asKburError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { MANIFEST_SCHEMA_VERSION, newBackupId, type Artifact, type BackupPhase, type Manifest } from '../../shared/manifest.js';
import { KBUR_VERSION } from '../../shared/version.js';
import type { AgentClient } from '../agent-client.js';
import { isRepositoryFull, repositoryFullError } from '../repository/full.js';
import type { BackupWriter, Repository } from '../repository/repository.js';
import { createSealed, NO_SEAL, type SealSettings } from '../repository/seal.js';
import { chooseSnapshotMembers } from './choose-member.js';
import { runDumpProfile } from './dumps.js';
import type { Progress } from './progress.js';
import { receiveArtifact } from './receive.js';

/** Before the suffixes of compression and encryption (.zst, .gz, .age): the manifest has the real path. */
export const SNAPSHOT_PATH = 'etcd/snapshot.db';
export const nodeArchivePath = (node: string): string => `nodes/${node}/kubernetes.tar`;

export interface BackupOptions {
  cluster: string;
  agents: AgentClient[];
  /** Dump profiles to run, by node. */
  dumps: { node: string; profile: string }[];
  repository: Repository;
  /** Compression and encryption of what is written; default none. */
  seal?: SealSettings;
  log: Logger;
  progress?: Progress;
  stallMs: number;
  signal: AbortSignal;
}

type Failure = Manifest['failures'][number];

/**
 * One backup set: every agent asked at once; one etcd snapshot from the best member (falling back
 * to the next when its stream breaks) while every node's kubernetes dir is archived; manifest last.
 */
export async function runBackup(opts: BackupOptions): Promise<Manifest> {
  const startedAt = new Date();
  const id = newBackupId(startedAt);
  const log = opts.log.child({ backup: id });
  const usage: WriteUsage = { written: 0 };
  const fullError = async (err: unknown): Promise<KburError> => {
    const needed = Math.max(0, ...[...byNode.values()].map((i) => i.etcd?.dbSize ?? 0));
    return repositoryFullError(err, {
      location: opts.repository.artifactLocation(opts.cluster, id, 'manifest.json').replace(/\/manifest\.json$/, ''),
      space: usage.spaceWhenFull ?? (await opts.repository.space(opts.cluster).catch(() => undefined)),
      written: usage.written,
      needed,
    });
  };
  const infos = await Promise.all(
    opts.agents.map((a) =>
      // No key count: the snapshot's trailer counts them at its revision.
      a.getNodeInfo({ countKeys: false }).then(
        (info) => ({ info }),
        (error: unknown) => ({ error: asKburError(error) }),
      ),
    ),
  );
  const failures: Failure[] = [];
  const byNode = new Map<string, GetNodeInfoResponse>();
  // Why a node gave no info (not reachable, another wire version...): said again where it is left out.
  const agentErrors = new Map<string, string>();
  infos.forEach((r, i) => {
    const node = opts.agents[i]!.node.name;
    if ('info' in r) byNode.set(node, r.info);
    else {
      failures.push({ part: `node/${node}`, message: r.error.message });
      agentErrors.set(node, r.error.message);
    }
  });

  const writer = measured(
    await opts.repository.createBackup(opts.cluster, id).catch(async (err: unknown) => {
      throw isRepositoryFull(err) ? await fullError(err) : err;
    }),
    usage,
    () => opts.repository.space(opts.cluster),
  );
  log.info('backup started', { location: writer.location, reachable: [...byNode.keys()] });
  opts.progress?.archivesExpected(byNode.size);
  // A full repository stops every stream at once: no other member or node would find room either.
  const full = new AbortController();
  const inner: BackupOptions = { ...opts, signal: AbortSignal.any([opts.signal, full.signal]) };
  const stopIfFull = <T>(p: Promise<T>): Promise<T> =>
    p.catch((err: unknown) => {
      if (isRepositoryFull(err)) full.abort(err);
      throw err;
    });
  const settled = await Promise.allSettled([
    stopIfFull(snapshotWithFallback(inner, writer, byNode, agentErrors, log)),
    Promise.all(opts.agents.filter((a) => byNode.has(a.node.name)).map((a) => stopIfFull(archiveNode(inner, writer, a)))),
    Promise.all(opts.dumps.map((d) => stopIfFull(runDump(inner, writer, d, agentErrors)))),
  ]);
  opts.progress?.stop();
  if (full.signal.aborted) {
    // Nothing of this set is usable, and its files hold the room the next backup needs.
    await opts.repository.deleteBackup(opts.cluster, id).catch(() => undefined);
    throw await fullError(full.signal.reason);
  }
  for (const r of settled) if (r.status === 'rejected') throw r.reason;
  const [snapshot, archives, dumps] = settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as [
    Awaited<ReturnType<typeof snapshotWithFallback>>,
    Awaited<ReturnType<typeof archiveNode>>[],
    Awaited<ReturnType<typeof runDump>>[],
  ];

  failures.push(...snapshot.failures, ...[...archives, ...dumps].flatMap((a) => ('failure' in a ? [a.failure] : [])));
  const artifacts: Artifact[] = [
    ...(snapshot.artifact ? [snapshot.artifact] : []),
    ...archives.flatMap((a) => ('artifact' in a ? [a.artifact] : [])),
    ...dumps.flatMap((d) => ('artifacts' in d ? d.artifacts : [])),
  ];
  const phase: BackupPhase = !snapshot.artifact ? 'Failed' : failures.length ? 'PartiallyFailed' : 'Completed';
  const manifest: Manifest = {
    schemaVersion: MANIFEST_SCHEMA_VERSION,
    kburVersion: KBUR_VERSION,
    cluster: opts.cluster,
    id,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    phase,
    failures,
    etcd: snapshot.etcd,
    artifacts,
  };
  try {
    await writer.writeManifest(manifest);
  } catch (err) {
    if (isRepositoryFull(err)) {
      await opts.repository.deleteBackup(opts.cluster, id).catch(() => undefined);
      throw await fullError(err);
    }
    const e = asKburError(err);
    if (e.code === 'CANCELLED' || opts.signal.aborted) throw e;
    // No manifest, no backup: whatever was uploaded, this set cannot be restored from.
    log.error('manifest not written', { error: e.message });
    return {
      ...manifest,
      phase: 'Failed',
      failures: [...failures, { part: 'manifest', message: `manifest.json not written, so this set is not a backup: ${e.message}` }],
    };
  }
  log.info('backup finished', { phase, failures: failures.length, artifacts: artifacts.length });
  return manifest;
}

interface WriteUsage {
  /** Bytes this backup wrote to the repository, kept or not. */
  written: number;
  /** Free space when a write first failed for want of it (read before that part file goes). */
  spaceWhenFull?: { free: number; total: number };
}

/** The backup's writer, counting what it writes, for the figures of a "repository full". */
function measured(writer: BackupWriter, usage: WriteUsage, space: () => Promise<WriteUsage['spaceWhenFull']>): BackupWriter {
  return {
    id: writer.id,
    location: writer.location,
    discard: (relPath) => writer.discard(relPath),
    writeManifest: (m) => writer.writeManifest(m),
    artifact: async (relPath) => {
      const a = await writer.artifact(relPath);
      // fs.WriteStream counts what reached the file; other stores' streams may not say.
      const bytes = (): number => (a.stream as Partial<WriteStream>).bytesWritten ?? 0;
      return {
        stream: a.stream,
        commit: async () => {
          await a.commit();
          usage.written += bytes();
        },
        abort: async () => {
          if (a.stream.errored && isRepositoryFull(a.stream.errored)) usage.spaceWhenFull ??= await space().catch(() => undefined);
          usage.written += bytes();
          await a.abort();
        },
      };
    },
  };
}

async function snapshotWithFallback(
  opts: BackupOptions,
  writer: BackupWriter,
  byNode: Map<string, GetNodeInfoResponse>,
  agentErrors: Map<string, string>,
  log: Logger,
): Promise<{ artifact?: Artifact; etcd: Manifest['etcd']; failures: Failure[] }> {
  const choice = chooseSnapshotMembers(
    opts.agents.map((a) => ({ node: a.node.name, etcd: byNode.get(a.node.name)?.etcd, agentError: agentErrors.get(a.node.name) })),
  );
  for (const s of choice.skipped) log.info('member not used for the snapshot', s);
  const fallbacks: { node: string; error: string }[] = [];
  for (const node of choice.order) {
    const agent = opts.agents.find((a) => a.node.name === node)!;
    opts.progress?.snapshotFrom(node, byNode.get(node)?.etcd?.dbSize ?? 0);
    try {
      const sealed = await createSealed(writer, SNAPSHOT_PATH, opts.seal ?? NO_SEAL);
      const got = await receiveArtifact<SnapshotHeader, SnapshotTrailer>({
        messages: (signal) => agent.snapshotEtcd(signal),
        writer: sealed,
        what: `etcd snapshot from ${node}`,
        snapshot: true,
        stallMs: opts.stallMs,
        signal: opts.signal,
        onBytes: (n) => opts.progress?.add(n),
      });
      const member = got.header?.member;
      if (!got.header || !member) throw new KburError('DATA_LOSS', `etcd snapshot from ${node} came without its header`);
      log.info('snapshot saved', { node, size: got.size, revision: got.header.revision });
      return {
        artifact: { kind: 'etcd-snapshot', node, ...sealed.record(got) },
        etcd: {
          node,
          memberId: member.memberId,
          memberName: member.name,
          endpoint: member.endpoint,
          version: member.version,
          clusterId: member.clusterId,
          revision: got.header.revision,
          keyCount: got.trailer.keyCount,
          dbSize: member.dbSize,
          members: member.members,
          fallbacks,
        },
        failures: [],
      };
    } catch (err) {
      if (isRepositoryFull(err)) throw err;
      const e = asKburError(err);
      if (e.code === 'CANCELLED' || opts.signal.aborted) throw e;
      log.warn('snapshot failed; trying the next member', { node, error: e.message });
      fallbacks.push({ node, error: e.message });
    }
  }
  const why = [...choice.skipped.map((s) => `${s.node}: ${s.reason}`), ...fallbacks.map((f) => `${f.node}: ${f.error}`)];
  return {
    etcd: null,
    failures: [
      { part: 'etcd', message: `no etcd member gave a whole snapshot${why.length ? ` (${why.join('; ')})` : ' (no member to ask)'}` },
    ],
  };
}

function runDump(
  opts: BackupOptions,
  writer: BackupWriter,
  d: { node: string; profile: string },
  agentErrors: Map<string, string>,
): Promise<{ artifacts: Artifact[] } | { failure: Failure }> {
  const agent = opts.agents.find((a) => a.node.name === d.node)!;
  const agentError = agentErrors.get(d.node);
  if (agentError !== undefined) return Promise.resolve({ failure: { part: `dump/${d.node}/${d.profile}`, message: agentError } });
  return runDumpProfile({ agent, profile: d.profile, writer, seal: opts.seal ?? NO_SEAL, stallMs: opts.stallMs, signal: opts.signal });
}

async function archiveNode(
  opts: BackupOptions,
  writer: BackupWriter,
  agent: AgentClient,
): Promise<{ artifact: Artifact } | { failure: Failure }> {
  const node = agent.node.name;
  const path = nodeArchivePath(node);
  try {
    const sealed = await createSealed(writer, path, opts.seal ?? NO_SEAL);
    const got = await receiveArtifact<never, ArchiveTrailer>({
      messages: (signal) => agent.archiveKubernetes(signal),
      writer: sealed,
      what: `kubernetes dir of ${node}`,
      snapshot: false,
      stallMs: opts.stallMs,
      signal: opts.signal,
    });
    opts.progress?.archiveDone();
    return {
      artifact: {
        kind: 'kubernetes-dir',
        node,
        ...sealed.record(got),
        kubeadmConfigFiles: got.trailer.kubeadmConfigFiles,
        fileCount: got.trailer.fileCount,
      },
    };
  } catch (err) {
    if (isRepositoryFull(err)) throw err;
    const e = asKburError(err);
    if (e.code === 'CANCELLED' || opts.signal.aborted) throw e;
    return { failure: { part: `node/${node}`, message: e.message } };
  }
}

import { asKburError } from '../../shared/errors.js';
import type { Manifest } from '../../shared/manifest.js';
import type { AgentClient } from '../agent-client.js';
import { FanOut } from '../fan-out.js';
import type { Repository } from '../repository/repository.js';
import { identityProblem, openPlain, plainDigest, type AgeIdentity } from '../repository/seal.js';

export interface NodeCopy {
  node: string;
  ok: boolean;
  /** Where the agent keeps it, or why it could not. */
  detail: string;
}

/**
 * backup.copySnapshotToNodes: the committed snapshot, read once from the repository, sent to every
 * node for its agent to keep, so that a restore need not move it. Runs after the manifest: the
 * backup is whole whatever happens here, and a node that fails only lacks its copy.
 */
export async function copySnapshotToNodes(opts: {
  manifest: Manifest;
  agents: AgentClient[];
  repository: Repository;
  /** An encrypted snapshot is decrypted here, with this identity, before it is sent: a node restores from plaintext. */
  identity?: AgeIdentity;
  signal: AbortSignal;
}): Promise<NodeCopy[]> {
  const snapshot = opts.manifest.artifacts.find((a) => a.kind === 'etcd-snapshot');
  if (!snapshot) return [];
  const locked = identityProblem(snapshot, opts.identity);
  if (locked) return opts.agents.map((a) => ({ node: a.node.name, ok: false, detail: `no copy sent: ${locked}` }));
  const source = await openPlain(opts.repository, opts.manifest, snapshot, opts.identity);
  const { size, sha256 } = plainDigest(snapshot);
  const fan = new FanOut(
    source,
    opts.agents.map((a) => a.node.name),
  );
  try {
    return await Promise.all(
      opts.agents.map((agent) =>
        fan
          .send(agent.node.name, (data) => agent.keepSnapshot({ backupId: opts.manifest.id, size, sha256 }, data, opts.signal))
          .then(
            (kept): NodeCopy => ({ node: agent.node.name, ok: true, detail: kept.path }),
            (err: unknown): NodeCopy => ({ node: agent.node.name, ok: false, detail: asKburError(err).message }),
          ),
      ),
    );
  } finally {
    fan.close();
  }
}

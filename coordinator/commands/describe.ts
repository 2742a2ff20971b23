import { mib } from '../backup/progress.js';
import { loadContext, type GlobalOptions } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { signatureNote } from '../repository/signing.js';

/** kbur describe ID: everything the manifest says, and the last verification. */
export async function run(opts: GlobalOptions & { id: string }): Promise<ExitCode> {
  const ctx = await loadContext(opts);
  const m = await ctx.repository.readManifest(ctx.config.cluster, opts.id);
  const verification = await ctx.repository.readVerification(ctx.config.cluster, opts.id);
  if (ctx.json) {
    ctx.out.write(JSON.stringify({ manifest: m, verification: verification ?? null }, null, 2) + '\n');
    return ExitCode.OK;
  }
  const lines = [
    `Backup:    ${m.id}`,
    `Cluster:   ${m.cluster}`,
    `Phase:     ${m.phase}`,
    `Started:   ${m.startedAt}`,
    `Finished:  ${m.finishedAt}`,
    `kbur:      ${m.kburVersion} (manifest schema ${m.schemaVersion})`,
    `Signature: ${signatureNote(ctx.signing)}`,
  ];
  if (m.etcd) {
    const e = m.etcd;
    lines.push(
      'etcd:',
      e.node
        ? `  snapshot of member ${e.memberName} (${e.memberId}) on ${e.node}, ${e.endpoint}, etcd ${e.version}`
        : `  snapshot ${e.endpoint} (kbur import), storage version ${e.version || 'unknown'}`,
      `  cluster id ${e.clusterId || 'unknown'}, revision ${e.revision}, ${e.keyCount} keys, db size ${mib(e.dbSize)}`,
      '  members:',
      ...e.members.map(
        (mb) =>
          `    ${mb.name || '(unstarted)'} ${mb.id} peers ${mb.peerUrls.join(',')} clients ${mb.clientUrls.join(',')}${mb.isLearner ? ' (learner)' : ''}`,
      ),
      ...e.fallbacks.map((f) => `  tried first: ${f.node}: ${f.error}`),
    );
  } else {
    lines.push('etcd:      no snapshot');
  }
  lines.push('Artifacts:');
  for (const a of m.artifacts) {
    lines.push(`  ${a.path}  ${mib(a.size)}  sha256 ${a.sha256}${a.fileCount !== undefined ? `  ${a.fileCount} entries` : ''}`);
    if (a.plaintext)
      lines.push(
        `    ${a.compression === 'none' ? '' : `${a.compression}, `}${a.encryption === 'age' ? `age to ${a.recipients?.join(', ')}` : 'not encrypted'}; as made: ${mib(a.plaintext.size)}, sha256 ${a.plaintext.sha256}`,
      );
  }
  const dumps = m.artifacts.filter((a) => a.kind === 'dump');
  if (dumps.length) {
    lines.push('Dumps:');
    for (const a of dumps) {
      const d = a.dump!;
      lines.push(
        `  ${a.node}/${d.profile}/${d.part} (${d.type}): ${mib(a.size)}${a.compression === 'gzip' ? ' gzip' : ''}, ${(d.durationMs / 1000).toFixed(1)} s, ${d.toolVersion || d.tool}`,
      );
      if (d.stderrTail.trim()) lines.push(`    stderr: ${d.stderrTail.trim().split('\n').slice(-1)[0]}`);
    }
  }
  const holders = m.artifacts.filter((a) => a.kind === 'kubernetes-dir' && a.kubeadmConfigFiles?.length);
  lines.push(
    'kubeadm ClusterConfiguration:',
    ...(holders.length ? holders.map((a) => `  ${a.node}: ${a.kubeadmConfigFiles!.join(', ')}`) : ['  in no node archive']),
    ...(m.etcd ? ['  also in the etcd snapshot (ConfigMap kube-system/kubeadm-config) when the cluster has one'] : []),
  );
  if (m.failures.length) lines.push('Failures:', ...m.failures.map((f) => `  ${f.part}: ${f.message}`));
  if (verification?.deep) {
    const d = verification.deep;
    lines.push(
      d.ok
        ? `Verified (deep) at ${d.verifiedAt}: the snapshot restores; revision ${d.revision}, ${d.keyCount} keys, ${d.namespaces} namespaces`
        : `Deep verification FAILED at ${d.verifiedAt}: ${d.problems.join('; ')}`,
    );
  }
  lines.push(
    verification
      ? `Last verified: ${verification.verifiedAt}: ${
          verification.ok
            ? 'all artifacts good'
            : 'MISMATCH: ' +
              verification.artifacts
                .filter((a) => !a.ok)
                .map((a) => `${a.path}: ${a.error}`)
                .join('; ')
        }`
      : `Last verified: never (kbur verify ${m.id})`,
  );
  ctx.out.write(lines.join('\n') + '\n');
  return ExitCode.OK;
}

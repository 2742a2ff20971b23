import { mib } from '../backup/progress.js';
import { connectAgents, loadContext, type GlobalOptions } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { age } from '../status/check.js';
import { collectStatus, type StatusReport } from '../status/collect.js';

/** kbur status: agents, etcd members, the last backups and verification, snapshot copies, certificate expiry. */
export async function run(opts: GlobalOptions): Promise<ExitCode> {
  const ctx = await loadContext(opts);
  const agents = await connectAgents(ctx);
  try {
    const report = await collectStatus(ctx, agents);
    ctx.out.write(ctx.json ? JSON.stringify(report, null, 2) + '\n' : describe(report));
    return ExitCode.OK;
  } finally {
    for (const a of agents) a.close();
  }
}

function describe(r: StatusReport): string {
  const lines = [`cluster ${r.cluster} at ${r.checkedAt}`, '', 'agents:'];
  lines.push(
    ...table(
      ['NODE', 'AGENT', 'STATE', 'VERSION', 'ROLE', 'UPTIME'],
      r.agents.map((a) =>
        a.reachable
          ? [a.node, a.agent, 'up', a.version ?? '', a.role ?? '', age(a.uptimeSeconds ?? 0)]
          : [a.node, a.agent, `DOWN: ${a.error}`, '', '', ''],
      ),
    ),
  );
  lines.push('', `etcd members (leader: ${r.leader ?? 'NONE'}):`);
  lines.push(
    ...table(
      ['NAME', 'ID', 'NODE', 'LEADER', 'HEALTH', 'DB SIZE', 'IN USE', 'REVISION'],
      r.members.map((m) => [
        m.name,
        m.id,
        m.node ?? '-',
        m.leader ? 'yes' : '',
        m.healthy ? 'healthy' : `UNHEALTHY: ${m.error}`,
        m.dbSize === undefined ? '-' : size(m.dbSize),
        m.dbSizeInUse === undefined ? '-' : size(m.dbSizeInUse),
        String(m.revision ?? '-'),
      ]),
    ),
  );
  lines.push(
    '',
    `repository ${r.repository.location}: ${r.repository.reachable ? `backups: ${r.backups}` : `NOT READABLE: ${r.repository.error}`}`,
  );
  const b = r.lastBackup;
  const ok = r.lastCompletedBackup;
  lines.push(`  last backup:           ${b ? `${b.id} ${b.phase}, ${age(b.ageSeconds)} ago, ${size(b.size)}` : 'none'}`);
  if (b && ok && ok.id !== b.id) lines.push(`  last Completed backup: ${ok.id}, ${age(ok.ageSeconds)} ago, ${size(ok.size)}`);
  const v = r.lastVerified;
  lines.push(`  last verified:         ${v ? `${v.id}, verified ${age(v.ageSeconds)} ago` : 'none (run kbur verify ID)'}`);
  lines.push('', 'snapshot copies on the nodes:');
  for (const c of r.snapshotCopies) {
    lines.push(`  ${c.node}: ${c.copies.length ? c.copies.map((x) => `${x.backupId} (${size(x.size)})`).join(', ') : 'none'}`);
  }
  lines.push('', 'nearest certificate expiry per node:');
  for (const c of r.nearestCertificates) {
    const when = c.secondsLeft <= 0 ? 'EXPIRED' : `in ${age(c.secondsLeft)}`;
    lines.push(`  ${c.node}: ${c.notAfter} (${when}) ${c.file} [${c.subject}] (the first to expire of ${c.count})`);
  }
  return lines.join('\n') + '\n';
}

/** A small etcd (a fresh cluster, a test) would read 0.0 MiB. */
function size(bytes: number): string {
  return bytes < 1 << 20 ? `${(bytes / 1024).toFixed(1)} KiB` : mib(bytes);
}

function table(header: string[], rows: string[][]): string[] {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all.map((r) => `  ${r.map((c, i) => c.padEnd(widths[i]!)).join('  ')}`.trimEnd());
}

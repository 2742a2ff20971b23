import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, release, totalmem } from 'node:os';
import { dirname } from 'node:path';
import { KBUR_VERSION } from '../../shared/version.js';
import { KBUR_BIN } from '../../test/helpers/kbur.js';
import type { SizeResult } from './backup.js';
import { backupMarkdown, backupText, hasBackup } from './backup-report.js';
import type { RestoreSection } from './restore.js';
import { restoreMarkdown, restoreText } from './restore-report.js';
import { ETCDCTL_ENV, GiB, round, run } from './util.js';

export interface Report {
  date: string;
  command: string;
  machine: Record<string, unknown>;
  method: string[];
  results: SizeResult[];
  /** The restore benchmark (RTO); absent with --restore-sizes none. */
  restore?: RestoreSection;
}

export async function machineInfo(): Promise<Record<string, unknown>> {
  const first = async (cmd: string, args: string[]): Promise<string | undefined> => {
    try {
      return (await run(cmd, args, { env: ETCDCTL_ENV })).stdout.split('\n')[0]?.trim();
    } catch {
      return undefined;
    }
  };
  const [etcd, etcdctl, commit, dirty] = await Promise.all([
    first('etcd', ['--version']),
    first('etcdctl', ['version']),
    first('git', ['-C', dirname(dirname(KBUR_BIN)), 'rev-parse', '--short', 'HEAD']),
    run('git', ['-C', dirname(dirname(KBUR_BIN)), 'status', '--porcelain', '--untracked-files=no'], { env: ETCDCTL_ENV }).then(
      (r) => r.stdout.trim() !== '',
      () => undefined,
    ),
  ]);
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    memGiB: round(totalmem() / GiB, 1),
    kernel: release(),
    node: process.version,
    etcd: etcd?.replace(/^etcd Version:\s*/, ''),
    etcdctl: etcdctl?.replace(/^etcdctl version:\s*/, ''),
    kbur: KBUR_VERSION,
    gitCommit: commit ? `${commit}${dirty ? ' (with uncommitted changes)' : ''}` : undefined,
  };
}

export function textReport(report: Report): string {
  const out: string[] = ['', `kbur ${hasBackup(report) ? 'backup' : 'restore'} benchmark, ${report.date}`];
  const m = report.machine;
  out.push(
    `machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memGiB} GiB, node ${m.node}, etcd ${m.etcd}, kbur ${m.kbur} ${m.gitCommit ?? ''}`,
    '',
  );
  if (hasBackup(report)) out.push(...backupText(report));
  if (report.restore) out.push(...restoreText(report.restore, hasBackup(report)));
  return out.join('\n') + '\n';
}

export function markdownReport(report: Report): string {
  const m = report.machine;
  const head = [
    `# kbur ${hasBackup(report) ? 'backup' : 'restore'} benchmark`,
    '',
    `${report.date}: \`${report.command}\``,
    '',
    `Machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memGiB} GiB RAM, Linux ${m.kernel}, node ${m.node}, etcd ${m.etcd}, etcdctl ${m.etcdctl}, kbur ${m.kbur} ${m.gitCommit ?? ''}`,
    '',
  ];
  const out = [...head, ...(hasBackup(report) ? backupMarkdown(report) : [])];
  if (report.restore) out.push(...restoreMarkdown(report.restore, hasBackup(report)));
  return out.join('\n');
}

export async function writeReport(report: Report, out: string): Promise<void> {
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, JSON.stringify(report, null, 2) + '\n');
  await writeFile(out.replace(/\.json$/, '') + '.md', markdownReport(report));
}

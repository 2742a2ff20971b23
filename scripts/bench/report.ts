import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, release, totalmem } from 'node:os';
import { dirname } from 'node:path';
import { KBUR_VERSION } from '../../shared/version.js';
import { KBUR_BIN } from '../../test/helpers/kbur.js';
import type { SizeResult } from './backup.js';
import type { ScenarioName } from './options.js';
import type { RestoreSection } from './restore.js';
import { SCENARIOS } from './scenarios.js';
import type { BinariesSection } from './binaries.js';
import type { DeepVerifySection } from './deep-verify.js';
import type { RebuildSection } from './rebuild.js';
import type { S3Section } from './s3.js';
import type { ScrapeSection } from './scrape.js';
import { ETCDCTL_ENV, GiB, round, run } from './util.js';

export interface Report {
  date: string;
  command: string;
  machine: Record<string, unknown>;
  /** The scenarios run, in order. */
  scenarios: ScenarioName[];
  /** Scenarios left out, and why (a feature not built, a tool missing, no size). */
  skipped: { name: string; why: string }[];
  /** The backup scenario's method. */
  method: string[];
  /** The backup scenario, per size; empty when it did not run. */
  results: SizeResult[];
  /** The restore benchmark (RTO); absent when it did not run. */
  restore?: RestoreSection;
  scrape?: ScrapeSection;
  s3?: S3Section;
  deepVerify?: DeepVerifySection;
  binaries?: BinariesSection;
  rebuild?: RebuildSection;
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

const title = (report: Report): string => `kbur ${report.scenarios[0] ?? 'backup'} benchmark`;

const skippedLines = (report: Report): string[] => report.skipped.map((s) => `not run: ${s.name}: ${s.why}`);

export function textReport(report: Report): string {
  const out: string[] = ['', `${title(report)}, ${report.date}`];
  const m = report.machine;
  out.push(
    `machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memGiB} GiB, node ${m.node}, etcd ${m.etcd}, kbur ${m.kbur} ${m.gitCommit ?? ''}`,
    '',
  );
  for (const s of SCENARIOS) out.push(...s.text(report));
  if (report.skipped.length) out.push('', ...skippedLines(report));
  return out.join('\n') + '\n';
}

export function markdownReport(report: Report): string {
  const m = report.machine;
  const out = [
    `# ${title(report)}`,
    '',
    `${report.date}: \`${report.command}\``,
    '',
    `Machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memGiB} GiB RAM, Linux ${m.kernel}, node ${m.node}, etcd ${m.etcd}, etcdctl ${m.etcdctl}, kbur ${m.kbur} ${m.gitCommit ?? ''}`,
    '',
  ];
  for (const s of SCENARIOS) out.push(...s.markdown(report));
  if (report.skipped.length) out.push('# Not run', '', ...skippedLines(report).map((l) => `- ${l.replace(/^not run: /, '')}`), '');
  return out.join('\n');
}

export async function writeReport(report: Report, out: string): Promise<void> {
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, JSON.stringify(report, null, 2) + '\n');
  await writeFile(out.replace(/\.json$/, '') + '.md', markdownReport(report));
}

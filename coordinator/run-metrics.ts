import { open, readFile, rm, stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { BACKUP_PHASES, type BackupPhase, type Manifest } from '../shared/manifest.js';
import { errorMessage } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { writeFileAtomic } from '../shared/streams.js';
import type { CoordinatorConfig } from './config.js';

/**
 * What the coordinator tells Prometheus after each run (kbur is not a daemon, so it is not
 * scraped): Prometheus text written for node_exporter's textfile collector, and optionally pushed
 * to a Pushgateway. Names follow Velero's where the meaning is the same. Counters survive between
 * runs: each run reads the last file back and adds to it.
 */
const METRICS = {
  kbur_backup_attempt_total: ['counter', 'Backups started'],
  kbur_backup_success_total: ['counter', 'Backups that ended Completed'],
  kbur_backup_partial_failure_total: ['counter', 'Backups that ended PartiallyFailed (a good etcd snapshot, some part missing)'],
  kbur_backup_failure_total: ['counter', 'Backups that ended Failed or never finished (no good etcd snapshot)'],
  kbur_backup_last_successful_timestamp: ['gauge', 'When the last Completed backup finished, seconds since the epoch'],
  kbur_backup_last_timestamp: ['gauge', 'When the last backup, whatever its phase, finished'],
  kbur_backup_last_status: ['gauge', 'Whether the last backup was Completed (1) or not (0)'],
  kbur_backup_last_phase: ['gauge', 'The phase of the last backup: 1 for its phase, 0 for the others'],
  kbur_backup_duration_seconds: ['gauge', 'How long the last backup took'],
  kbur_backup_size_bytes: ['gauge', 'Bytes of the last backup (every artifact)'],
  kbur_verify_success_total: ['counter', 'Verifications that found every artifact matching its manifest'],
  kbur_verify_failure_total: ['counter', 'Verifications that found damage, or could not finish'],
  kbur_verify_last_success_timestamp: ['gauge', 'When the last successful verification ran'],
  kbur_verify_last_status: ['gauge', 'Whether the last verification succeeded (1) or not (0)'],
  kbur_verify_duration_seconds: ['gauge', 'How long the last verification took'],
  kbur_prune_success_total: ['counter', 'Prune runs that finished'],
  kbur_prune_failure_total: ['counter', 'Prune runs that failed'],
  kbur_prune_deleted_backups_total: ['counter', 'Backups removed by prune'],
  kbur_prune_last_success_timestamp: ['gauge', 'When the last successful prune finished'],
  kbur_prune_duration_seconds: ['gauge', 'How long the last prune took'],
  kbur_restore_attempt_total: ['counter', 'Restores started or resumed'],
  kbur_restore_success_total: ['counter', 'Restores that completed and verified'],
  kbur_restore_failed_total: ['counter', 'Restores that stopped with an error (see the journal; --resume or --rollback)'],
  kbur_restore_last_timestamp: ['gauge', 'When the last restore ended'],
  kbur_restore_duration_seconds: ['gauge', 'How long the last restore (or resume) took'],
} as const satisfies Record<string, readonly ['counter' | 'gauge', string]>;

export type RunMetricName = keyof typeof METRICS;

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;

/** Every kbur sample of the file, by name, then by its label text (`cluster="x",phase="y"`). */
export class RunMetrics {
  private constructor(private readonly samples: Map<string, Map<string, number>>) {}

  /** The samples of the last file (none when there is none); lines kbur does not know are dropped. */
  static parse(text: string): RunMetrics {
    const samples = new Map<string, Map<string, number>>();
    for (const line of text.split('\n')) {
      const m = SAMPLE.exec(line);
      if (!m || !Object.hasOwn(METRICS, m[1]!)) continue;
      const value = Number(m[3]);
      if (!Number.isFinite(value)) continue;
      if (!samples.has(m[1]!)) samples.set(m[1]!, new Map());
      samples.get(m[1]!)!.set(m[2] ?? '', value);
    }
    return new RunMetrics(samples);
  }

  /** The samples of one cluster, to change. */
  cluster(cluster: string): ClusterMetrics {
    return new ClusterMetrics(this.samples, cluster);
  }

  /** Prometheus text, every metric with its HELP and TYPE; `only` keeps one cluster's samples. */
  render(only?: string): string {
    const lines: string[] = [];
    for (const [name, [type, help]] of Object.entries(METRICS)) {
      const rows = [...(this.samples.get(name) ?? [])].filter(([labels]) => only === undefined || labels.startsWith(clusterLabel(only)));
      if (!rows.length) continue;
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, value] of rows.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) lines.push(`${name}{${labels}} ${value}`);
    }
    return lines.join('\n') + '\n';
  }
}

export class ClusterMetrics {
  constructor(
    private readonly samples: Map<string, Map<string, number>>,
    private readonly name: string,
  ) {}

  inc(metric: RunMetricName, by = 1, extra: Record<string, string> = {}): void {
    const row = this.row(metric);
    const labels = this.labels(extra);
    row.set(labels, (row.get(labels) ?? 0) + by);
  }

  set(metric: RunMetricName, value: number, extra: Record<string, string> = {}): void {
    this.row(metric).set(this.labels(extra), value);
  }

  private row(metric: RunMetricName): Map<string, number> {
    if (!this.samples.has(metric)) this.samples.set(metric, new Map());
    return this.samples.get(metric)!;
  }

  private labels(extra: Record<string, string>): string {
    return [clusterLabel(this.name), ...Object.entries(extra).map(([k, v]) => `${k}="${escapeLabel(v)}"`)].join(',');
  }
}

function clusterLabel(cluster: string): string {
  return `cluster="${escapeLabel(cluster)}"`;
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

export interface RunMetricsTarget {
  config: Pick<CoordinatorConfig, 'cluster' | 'metrics'>;
  log: Logger;
}

/**
 * Applies `update` to this cluster's metrics, writes the textfile atomically and pushes to the
 * Pushgateway, as configured. Never throws: the run's own result stands; a failure is logged.
 */
export async function recordRun(target: RunMetricsTarget, update: (m: ClusterMetrics) => void): Promise<void> {
  const { textfile, pushgateway } = target.config.metrics;
  if (!textfile && !pushgateway) return;
  const cluster = target.config.cluster;
  const unlock = textfile ? await lockFile(`${textfile}.lock`) : undefined;
  let metrics: RunMetrics;
  try {
    try {
      metrics = RunMetrics.parse(textfile ? await readFile(textfile, 'utf8').catch(ifMissing('')) : '');
    } catch (err) {
      target.log.warn('cannot read the last metrics file; counters start again from 0', { file: textfile, error: errorMessage(err) });
      metrics = RunMetrics.parse('');
    }
    update(metrics.cluster(cluster));
    if (textfile) {
      // 0644: node_exporter reads it as its own user; metrics hold no secret.
      await writeFileAtomic(textfile, metrics.render(), { mode: 0o644 }).catch((err: unknown) =>
        target.log.warn('cannot write the metrics textfile', { file: textfile, error: errorMessage(err) }),
      );
    }
  } finally {
    await unlock?.();
  }
  await Promise.all([
    pushgateway &&
      push(pushgateway, cluster, metrics.render(cluster)).catch((err: unknown) =>
        target.log.warn('cannot push metrics to the Pushgateway', { url: pushgateway, error: errorMessage(err) }),
      ),
  ]);
}

const PUSH_TIMEOUT_MS = 5_000;

/** PUT replaces the group's metrics: job "kbur", grouped by cluster. */
async function push(base: string, cluster: string, text: string): Promise<void> {
  const url = `${base.replace(/\/+$/, '')}/metrics/job/kbur/cluster/${encodeURIComponent(cluster)}`;
  const res = await fetch(url, {
    method: 'PUT',
    headers: { 'content-type': 'text/plain; version=0.0.4' },
    body: text,
    signal: AbortSignal.timeout(PUSH_TIMEOUT_MS),
  });
  if (!res.ok) throw new Error(`${url} answered ${res.status}: ${(await res.text()).trim().slice(0, 200)}`);
}

const LOCK_WAIT_MS = 5_000;
/** A lock older than this was left by a run that was killed while it held it. */
const LOCK_STALE_MS = 30_000;

/**
 * Two kbur runs at once (the timer's backup, an operator's verify) must not both read the same
 * counters and each write its own +1. The lock is a file created exclusively beside the textfile.
 * If it cannot be had in time, the run goes on without it: a lost increment beats no metrics.
 */
async function lockFile(path: string): Promise<() => Promise<void>> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      await (await open(path, 'wx')).close();
      return () => rm(path, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return () => Promise.resolve();
    }
    const age = await stat(path).then(
      (s) => Date.now() - s.mtimeMs,
      () => 0,
    );
    if (age > LOCK_STALE_MS) await rm(path, { force: true });
    else if (Date.now() > deadline) return () => Promise.resolve();
    else await sleep(50);
  }
}

function ifMissing<T>(value: T): (err: NodeJS.ErrnoException) => T {
  return (err) => {
    if (err.code === 'ENOENT') return value;
    throw err;
  };
}

const seconds = (ms: number): number => ms / 1000;

/** After a backup: its manifest, or nothing when it never wrote one (it threw). */
export function recordBackup(target: RunMetricsTarget, run: { manifest?: Manifest; startedAt: number; endedAt: number }): Promise<void> {
  const phase: BackupPhase = run.manifest?.phase ?? 'Failed';
  return recordRun(target, (m) => {
    m.inc('kbur_backup_attempt_total');
    m.inc(
      phase === 'Completed'
        ? 'kbur_backup_success_total'
        : phase === 'PartiallyFailed'
          ? 'kbur_backup_partial_failure_total'
          : 'kbur_backup_failure_total',
    );
    if (phase === 'Completed') m.set('kbur_backup_last_successful_timestamp', seconds(run.endedAt));
    m.set('kbur_backup_last_timestamp', seconds(run.endedAt));
    m.set('kbur_backup_last_status', phase === 'Completed' ? 1 : 0);
    for (const p of BACKUP_PHASES) m.set('kbur_backup_last_phase', p === phase ? 1 : 0, { phase: p });
    m.set('kbur_backup_duration_seconds', seconds(run.endedAt - run.startedAt));
    if (run.manifest)
      m.set(
        'kbur_backup_size_bytes',
        run.manifest.artifacts.reduce((n, a) => n + a.size, 0),
      );
  });
}

export function recordVerify(target: RunMetricsTarget, run: { ok: boolean; startedAt: number; endedAt: number }): Promise<void> {
  return recordRun(target, (m) => {
    m.inc(run.ok ? 'kbur_verify_success_total' : 'kbur_verify_failure_total');
    if (run.ok) m.set('kbur_verify_last_success_timestamp', seconds(run.endedAt));
    m.set('kbur_verify_last_status', run.ok ? 1 : 0);
    m.set('kbur_verify_duration_seconds', seconds(run.endedAt - run.startedAt));
  });
}

/** After a prune (kbur prune calls it): whether it finished and how many backups it removed. */
export function recordPrune(
  target: RunMetricsTarget,
  run: { ok: boolean; deleted: number; startedAt: number; endedAt: number },
): Promise<void> {
  return recordRun(target, (m) => {
    m.inc(run.ok ? 'kbur_prune_success_total' : 'kbur_prune_failure_total');
    m.inc('kbur_prune_deleted_backups_total', run.deleted);
    if (run.ok) m.set('kbur_prune_last_success_timestamp', seconds(run.endedAt));
    m.set('kbur_prune_duration_seconds', seconds(run.endedAt - run.startedAt));
  });
}

export function recordRestore(target: RunMetricsTarget, run: { ok: boolean; startedAt: number; endedAt: number }): Promise<void> {
  return recordRun(target, (m) => {
    m.inc('kbur_restore_attempt_total');
    m.inc(run.ok ? 'kbur_restore_success_total' : 'kbur_restore_failed_total');
    m.set('kbur_restore_last_timestamp', seconds(run.endedAt));
    m.set('kbur_restore_duration_seconds', seconds(run.endedAt - run.startedAt));
  });
}

/** Runs `work`, then records how it went with `record` (ok unless it threw), and returns or rethrows its result. */
export async function measured<T>(
  record: (run: { ok: boolean; startedAt: number; endedAt: number }) => Promise<void>,
  work: () => Promise<T>,
  ok: (result: T) => boolean = () => true,
): Promise<T> {
  const startedAt = Date.now();
  let result: T;
  try {
    result = await work();
  } catch (err) {
    await record({ ok: false, startedAt, endedAt: Date.now() });
    throw err;
  }
  await record({ ok: ok(result), startedAt, endedAt: Date.now() });
  return result;
}

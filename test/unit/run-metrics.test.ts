import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { loadCoordinatorConfig } from '../../coordinator/config.js';
import { RunMetrics, measured, recordBackup, recordPrune, recordRestore, recordVerify } from '../../coordinator/run-metrics.js';
import type { KburError } from '../../shared/errors.js';
import { createLogger } from '../../shared/log.js';
import type { Manifest } from '../../shared/manifest.js';

function manifest(phase: Manifest['phase'], size: number): Manifest {
  return {
    schemaVersion: 1,
    kburVersion: '0.1.0',
    cluster: 'prod',
    id: '20261130T120000Z-0001',
    startedAt: '2026-11-30T12:00:00.000Z',
    finishedAt: '2026-11-30T12:00:10.000Z',
    phase,
    failures: [],
    etcd: null,
    artifacts: [
      {
        kind: 'etcd-snapshot',
        node: 'n1',
        path: 'etcd/snapshot.db',
        size,
        sha256: 'a'.repeat(64),
        compression: 'none',
        encryption: 'none',
      },
    ],
  };
}

describe('coordinator run metrics (textfile for node_exporter)', () => {
  let dir: string;
  let textfile: string;
  const log = createLogger({ component: 'test', level: 'error', stream: 'stderr' });
  const target = (cluster = 'prod') => ({ config: { cluster, metrics: { textfile } }, log });
  const sample = (text: string, series: string): number | undefined => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kbur-unit-'));
    textfile = join(dir, 'kbur.prom');
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('counts backups by phase across runs, reading the last file back, and keeps the last success time', async () => {
    await recordBackup(target(), { manifest: manifest('Completed', 100), startedAt: 1_000_000, endedAt: 1_010_000 });
    await recordBackup(target(), { manifest: manifest('PartiallyFailed', 50), startedAt: 2_000_000, endedAt: 2_005_000 });
    await recordBackup(target(), { startedAt: 3_000_000, endedAt: 3_001_000 });
    const text = await readFile(textfile, 'utf8');
    const c = '{cluster="prod"}';
    expect(sample(text, `kbur_backup_attempt_total${c}`)).to.equal(3);
    expect(sample(text, `kbur_backup_success_total${c}`)).to.equal(1);
    expect(sample(text, `kbur_backup_partial_failure_total${c}`)).to.equal(1);
    expect(sample(text, `kbur_backup_failure_total${c}`)).to.equal(1);
    expect(sample(text, `kbur_backup_last_successful_timestamp${c}`)).to.equal(1010);
    expect(sample(text, `kbur_backup_last_timestamp${c}`)).to.equal(3001);
    expect(sample(text, `kbur_backup_last_status${c}`)).to.equal(0);
    expect(sample(text, 'kbur_backup_last_phase{cluster="prod",phase="Failed"}')).to.equal(1);
    expect(sample(text, 'kbur_backup_last_phase{cluster="prod",phase="Completed"}')).to.equal(0);
    expect(sample(text, `kbur_backup_size_bytes${c}`)).to.equal(50, 'the last backup that wrote a manifest');
    expect(text).to.include('# TYPE kbur_backup_success_total counter\n');
    expect(text).to.include('# TYPE kbur_backup_duration_seconds gauge\n');
    expect((await stat(textfile)).mode & 0o777).to.equal(0o644, 'node_exporter reads it as its own user');
  });

  it("stays readable by node_exporter's user under kbur-backup.service's UMask=0077", async () => {
    const old = process.umask(0o077);
    try {
      await recordVerify(target(), { ok: true, startedAt: 0, endedAt: 1 });
    } finally {
      process.umask(old);
    }
    expect((await stat(textfile)).mode & 0o777).to.equal(0o644);
  });

  it('loses no count when several runs record at once', async () => {
    await Promise.all(
      Array.from({ length: 8 }, (_, i) => recordBackup(target(), { manifest: manifest('Completed', 1), startedAt: i, endedAt: i + 1 })),
    );
    expect(sample(await readFile(textfile, 'utf8'), 'kbur_backup_attempt_total{cluster="prod"}')).to.equal(8);
    expect(await stat(`${textfile}.lock`).catch(() => 'gone')).to.equal('gone');
  });

  it("keeps other clusters' series and lines of its own it does not know are dropped", async () => {
    await writeFile(textfile, 'kbur_verify_success_total{cluster="other"} 7\nsomething_else 1\n# a comment\n');
    await recordVerify(target(), { ok: true, startedAt: 0, endedAt: 5_000 });
    await recordVerify(target(), { ok: false, startedAt: 10_000, endedAt: 12_000 });
    const text = await readFile(textfile, 'utf8');
    expect(sample(text, 'kbur_verify_success_total{cluster="other"}')).to.equal(7);
    expect(sample(text, 'kbur_verify_success_total{cluster="prod"}')).to.equal(1);
    expect(sample(text, 'kbur_verify_failure_total{cluster="prod"}')).to.equal(1);
    expect(sample(text, 'kbur_verify_last_success_timestamp{cluster="prod"}')).to.equal(5);
    expect(sample(text, 'kbur_verify_last_status{cluster="prod"}')).to.equal(0);
    expect(text).to.not.include('something_else');
  });

  it('gives prune a function to call: runs, removed backups, last success', async () => {
    await recordPrune(target(), { ok: true, deleted: 3, startedAt: 0, endedAt: 2_000 });
    await recordPrune(target(), { ok: true, deleted: 2, startedAt: 0, endedAt: 4_000 });
    const text = await readFile(textfile, 'utf8');
    expect(sample(text, 'kbur_prune_deleted_backups_total{cluster="prod"}')).to.equal(5);
    expect(sample(text, 'kbur_prune_success_total{cluster="prod"}')).to.equal(2);
    expect(sample(text, 'kbur_prune_last_success_timestamp{cluster="prod"}')).to.equal(4);
  });

  it('counts restores that completed and restores that stopped with an error, which it passes on', async () => {
    expect(
      await measured(
        (r) => recordRestore(target(), r),
        () => Promise.resolve('done'),
      ),
    ).to.equal('done');
    const failed = await measured(
      (r) => recordRestore(target(), r),
      () => Promise.reject(new Error('etcd did not come back')),
    ).catch((e: unknown) => e);
    expect((failed as Error).message).to.equal('etcd did not come back');
    const text = await readFile(textfile, 'utf8');
    expect(sample(text, 'kbur_restore_attempt_total{cluster="prod"}')).to.equal(2);
    expect(sample(text, 'kbur_restore_success_total{cluster="prod"}')).to.equal(1);
    expect(sample(text, 'kbur_restore_failed_total{cluster="prod"}')).to.equal(1);
  });

  it('renders one cluster alone for the Pushgateway, escaping label values', () => {
    const m = RunMetrics.parse('kbur_backup_success_total{cluster="a"} 1\nkbur_backup_success_total{cluster="ab"} 2\n');
    m.cluster('we"ird').inc('kbur_backup_success_total');
    expect(m.render('a')).to.equal(
      '# HELP kbur_backup_success_total Backups that ended Completed\n# TYPE kbur_backup_success_total counter\nkbur_backup_success_total{cluster="a"} 1\n',
    );
    expect(m.render('we"ird')).to.include('kbur_backup_success_total{cluster="we\\"ird"} 1');
  });

  it('never fails the run when the textfile cannot be written', async () => {
    const missing = { config: { cluster: 'prod', metrics: { textfile: join(dir, 'no-such-dir', 'kbur.prom') } }, log };
    await recordVerify(missing, { ok: true, startedAt: 0, endedAt: 1 });
  });

  it('takes metrics.textfile (relative to kbur.yaml) and metrics.pushgateway in kbur.yaml, and names a bad one', async () => {
    const base =
      'cluster: demo\ntls: {ca: a, cert: b, key: c}\nnodes:\n  - {name: n, agent: 127.0.0.12:7443}\nrepository: {type: local, path: repo}\n';
    const file = join(dir, 'kbur.yaml');
    await writeFile(file, `${base}metrics: {textfile: textfile/kbur.prom, pushgateway: 'http://127.0.0.1:9091'}\n`);
    const c = await loadCoordinatorConfig(file);
    expect(c.metrics).to.deep.equal({ textfile: join(dir, 'textfile/kbur.prom'), pushgateway: 'http://127.0.0.1:9091' });
    await writeFile(file, `${base}metrics: {textfile: /var/lib/node-exporter/kbur.txt, pushgateway: 'ftp://x'}\n`);
    const err = (await loadCoordinatorConfig(file).catch((e: unknown) => e)) as KburError;
    expect(err.message).to.contain('"metrics.textfile": expected a file name ending in .prom');
    expect(err.message).to.contain('"metrics.pushgateway": expected an http(s) URL');
  });
});

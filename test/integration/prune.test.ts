// kbur prune on a repository with a synthetic history (no etcd needed: prune reads only the
// repository), and the repository lock as prune, unlock and an operator see it.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { stringify } from 'yaml';
import { ExitCode as EXIT } from '../../coordinator/exit-codes.js';
import { newHolder } from '../../coordinator/repository/lock.js';
import { MANIFEST_SCHEMA_VERSION, newBackupId, type BackupPhase, type Manifest } from '../../shared/manifest.js';
import { runKbur } from '../helpers/kbur.js';

const HOUR = 3_600_000;
const END = Date.parse('2026-11-30T18:00:00Z');
/** Backup id of the history's backup started at `iso` (every 6 hours, 400 of them, up to END). */
const idAt = (iso: string): string => newBackupId(new Date(iso), () => '0');

/** What the policy below keeps of the history (worked out by hand: see the unit test of the same history). */
const EXPECTED_KEPT = [
  '2026-11-30T18:00:00Z',
  '2026-11-30T12:00:00Z',
  '2026-11-30T06:00:00Z',
  '2026-11-29T18:00:00Z',
  '2026-11-28T18:00:00Z',
  '2026-11-27T18:00:00Z',
  '2026-11-26T18:00:00Z',
  '2026-11-25T18:00:00Z',
  '2026-11-24T18:00:00Z',
  '2026-11-22T18:00:00Z',
  '2026-11-15T18:00:00Z',
  '2026-10-31T18:00:00Z',
  '2026-09-30T18:00:00Z',
  '2026-09-10T06:00:00Z', // the newest verified one
  '2026-08-25T12:00:00Z', // a restore's journal names it
].map(idAt);

interface PruneJson {
  dryRun: boolean;
  kept: { id: string; reasons: string[] }[];
  deleted: { id: string; reasons: string[] }[];
  leftovers: { id: string; reason: string }[];
  untouched: { id: string; reason: string }[];
}

describe('kbur prune and the repository lock', function () {
  this.timeout(120_000);
  let root: string;
  let repo: string;
  let config: string;
  const backups = (): string => join(repo, 'demo', 'backups');
  const kbur = (...args: string[]) => runKbur(['--config', config, ...args]);
  // Started before prune takes the lock, so certainly dead (were it running, it would hold the lock).
  const leftover = newBackupId(new Date(Date.now() - HOUR), () => '0');
  const damaged = idAt('2026-08-01T00:00:00Z');

  async function writeSet(iso: string, phase: BackupPhase): Promise<void> {
    const id = idAt(iso);
    const dir = join(backups(), id);
    await mkdir(join(dir, 'etcd'), { recursive: true });
    const snapshot = Buffer.from(`snapshot ${id}`);
    await writeFile(join(dir, 'etcd', 'snapshot.db'), snapshot);
    const manifest: Manifest = {
      schemaVersion: MANIFEST_SCHEMA_VERSION,
      kburVersion: 'test',
      cluster: 'demo',
      id,
      startedAt: new Date(iso).toISOString(),
      finishedAt: new Date(Date.parse(iso) + 60_000).toISOString(),
      phase,
      failures: phase === 'Completed' ? [] : [{ part: 'etcd', message: 'injected' }],
      etcd: null,
      artifacts: [
        {
          kind: 'etcd-snapshot',
          node: 'node-1',
          path: 'etcd/snapshot.db',
          size: snapshot.length,
          sha256: createHash('sha256').update(snapshot).digest('hex'),
          compression: 'none',
          encryption: 'none',
        },
      ],
    };
    await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest));
  }

  async function writeVerified(iso: string, ok: boolean): Promise<void> {
    const verification = { verifiedAt: '2026-12-01T00:00:00Z', kburVersion: 'test', ok, artifacts: [] };
    await writeFile(join(backups(), idAt(iso), 'verify.json'), JSON.stringify(verification));
  }

  before(async function () {
    root = await mkdtemp(join(tmpdir(), 'kbur-prune-test-'));
    repo = join(root, 'repo');
    config = join(root, 'kbur.yaml');
    await writeFile(
      config,
      stringify({
        cluster: 'demo',
        tls: { ca: 'ca.crt', cert: 'kbur.crt', key: 'kbur.key' },
        nodes: [{ name: 'node-1', agent: '127.0.0.1:7443' }],
        repository: { type: 'local', path: repo },
        retention: { keepLast: 3, hourly: 2, daily: 7, weekly: 4, monthly: 3 },
        metrics: { textfile: join(root, 'kbur.prom') },
      }),
    );
    const isos = Array.from({ length: 400 }, (_, i) => new Date(END - i * 6 * HOUR).toISOString().replace('.000', ''));
    for (const iso of isos) await writeSet(iso, iso === '2026-10-15T06:00:00Z' ? 'Failed' : 'Completed');
    await writeVerified('2026-09-10T06:00:00Z', true);
    await writeVerified('2026-08-30T00:00:00Z', true);
    await writeVerified('2026-11-30T18:00:00Z', false); // damaged: not "verified"
    // A restore made from one old backup.
    const restoreId = '20261001T000000Z-0001';
    const backupId = idAt('2026-08-25T12:00:00Z');
    await mkdir(join(repo, 'demo', 'restores', restoreId), { recursive: true });
    await writeFile(
      join(repo, 'demo', 'restores', restoreId, 'journal.json'),
      JSON.stringify({
        restoreId,
        backupId,
        cluster: 'demo',
        startedAt: '2026-10-01T00:00:00Z',
        updatedAt: '2026-10-01T00:10:00Z',
        status: 'completed',
        plan: {
          restoreId,
          backupId,
          cluster: 'demo',
          token: `kbur-${restoreId}`,
          initialCluster: '',
          bumpRevision: 0,
          withKubernetesDir: false,
          snapshot: { path: 'etcd/snapshot.db', size: 1, sha256: 'ab', revision: 1, keyCount: 1 },
          nodes: [],
          notes: [],
        },
        entries: [],
      }),
    );
    // An interrupted backup's folder: no manifest, a part file.
    await mkdir(join(backups(), leftover, 'etcd'), { recursive: true });
    await writeFile(join(backups(), leftover, 'etcd', 'snapshot.db.part'), 'half');
    // A set whose manifest is damaged: prune cannot tell what it is, so it stays.
    await mkdir(join(backups(), damaged));
    await writeFile(join(backups(), damaged, 'manifest.json'), '{"schemaVersion": 1, "phase": "Compl');
    // Things that are not kbur backup sets.
    await writeFile(join(backups(), 'README.txt'), 'the operator keeps notes here');
    await mkdir(join(backups(), 'my-exports'));
    await writeFile(join(backups(), 'my-exports', 'x.tar'), 'x');
    await writeFile(join(repo, 'demo', 'notes.md'), 'x');
  });

  after(() => rm(root, { recursive: true, force: true }));

  it('refuses without a retention policy, and a --wait that is not a duration, naming what to write', async function () {
    const bare = join(root, 'bare.yaml');
    await writeFile(
      bare,
      stringify({
        cluster: 'demo',
        tls: { ca: 'a', cert: 'b', key: 'c' },
        nodes: [{ name: 'n', agent: '127.0.0.1:1' }],
        repository: { type: 'local', path: repo },
      }),
    );
    const none = await runKbur(['--config', bare, 'prune']);
    expect(none.code).to.equal(EXIT.BAD_CONFIG_OR_USAGE);
    expect(none.stderr).to.contain('no retention policy').and.contain('retention: {keepLast: 3');
    const wait = await kbur('prune', '--wait', 'soon');
    expect(wait.code).to.equal(EXIT.BAD_CONFIG_OR_USAGE);
    expect(wait.stderr).to.contain('--wait "soon": expected a duration such as 90s, 30m or 1h');
  });

  it('--dry-run says what it would keep (with every reason) and delete, and deletes nothing', async function () {
    const before = (await readdir(backups())).sort();
    const run = await kbur('--json', 'prune', '--dry-run');
    expect(run.code, run.stderr).to.equal(EXIT.OK);
    const r = JSON.parse(run.stdout) as PruneJson;
    expect(r.dryRun).to.equal(true);
    expect(r.kept.map((k) => k.id)).to.deep.equal(EXPECTED_KEPT);
    expect(r.deleted).to.have.length(400 - EXPECTED_KEPT.length);
    expect(r.leftovers.map((l) => l.id)).to.deep.equal([leftover]);
    expect(r.untouched.map((u) => u.id)).to.deep.equal([damaged]);
    expect((await readdir(backups())).sort()).to.deep.equal(before);

    const human = await kbur('prune', '--dry-run');
    expect(human.stdout).to.match(new RegExp(`kept +${idAt('2026-09-10T06:00:00Z')} +Completed +newest verified backup`));
    expect(human.stdout).to.match(new RegExp(`would delete +${idAt('2026-08-30T00:00:00Z')} +Completed +not selected by the policy`));
    expect(human.stdout).to.match(new RegExp(`would remove +${leftover} +Incomplete +left by a backup interrupted`));
    expect(human.stdout).to.match(new RegExp(`kept +${damaged} +Unreadable +left alone: .*manifest\\.json is not a valid kbur manifest`));
    expect(human.stdout).to.contain(`kept 16, would delete 385, would remove 1 left by interrupted backups; dry run: nothing was deleted`);
  });

  it('refuses while another operation holds the lock, or waits for it with --wait', async function () {
    const lockFile = join(repo, 'demo', 'kbur.lock');
    await writeFile(lockFile, JSON.stringify({ ...newHolder('backup'), pid: process.pid }));
    const refused = await kbur('prune');
    expect(refused.code).to.equal(EXIT.LOCKED);
    expect(refused.stderr).to.contain(
      `the repository of cluster demo is locked by backup on host ${hostname()}, pid ${process.pid}, since`,
    );
    const waited = await kbur('prune', '--wait', '2s');
    expect(waited.code).to.equal(EXIT.LOCKED);
    expect(waited.stderr).to.contain('waiting up to 2 s for the repository lock, held by backup');
    const unlock = await kbur('unlock', '--force');
    expect(unlock.code).to.equal(EXIT.LOCKED);
    expect(unlock.stderr).to.contain('which is still running; not broken');

    const dead = spawnSync(process.execPath, ['-e', '']).pid;
    await writeFile(lockFile, JSON.stringify({ ...newHolder('backup'), pid: dead }));
    const stale = await kbur('prune');
    expect(stale.code).to.equal(EXIT.LOCK_STALE);
    expect(stale.stderr).to.contain(`which is stale: process ${dead} no longer runs on this host`).and.contain('kbur unlock --force');
    const show = await kbur('unlock');
    expect(show.code).to.equal(EXIT.OK);
    expect(show.stdout).to.contain('which is stale').and.contain('kbur unlock --force breaks it');
    const broken = await kbur('unlock', '--force');
    expect(broken.code, broken.stderr).to.equal(EXIT.OK);
    expect(broken.stdout).to.contain(`broke the stale lock of backup on host ${hostname()}, pid ${dead}`);
    expect((await kbur('unlock')).stdout).to.contain('is not locked');
  });

  it('deletes what the policy does not keep and what interrupted backups left, and nothing that is not a kbur backup set', async function () {
    const run = await kbur('--json', 'prune');
    expect(run.code, run.stderr).to.equal(EXIT.OK);
    const r = JSON.parse(run.stdout) as PruneJson;
    expect(r.kept.map((k) => k.id)).to.deep.equal(EXPECTED_KEPT);
    expect(r.leftovers.map((l) => l.id)).to.deep.equal([leftover]);
    expect((await readdir(backups())).sort()).to.deep.equal([...EXPECTED_KEPT, damaged, 'README.txt', 'my-exports'].sort());
    expect(await readdir(join(backups(), 'my-exports'))).to.deep.equal(['x.tar']);
    expect((await readdir(join(repo, 'demo'))).sort()).to.deep.equal(['backups', 'notes.md', 'restores']);

    // For monitoring: node_exporter's textfile collector reads what prune did (a dry run records nothing).
    const metrics = await readFile(join(root, 'kbur.prom'), 'utf8');
    expect(metrics).to.match(/^kbur_prune_success_total\{cluster="demo"\} 1$/m);
    expect(metrics).to.match(/^kbur_prune_deleted_backups_total\{cluster="demo"\} 386$/m);

    const again = JSON.parse((await kbur('--json', 'prune')).stdout) as PruneJson;
    expect(again.deleted).to.deep.equal([]);
    expect(again.kept.map((k) => k.id)).to.deep.equal(EXPECTED_KEPT);
  });
});

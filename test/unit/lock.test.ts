import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { LocalRepository } from '../../coordinator/repository/local.js';
import {
  LEASE_MS,
  acquireLock,
  hostProbe,
  newHolder,
  staleReason,
  type HostProbe,
  type LockHolder,
  type LockRequest,
} from '../../coordinator/repository/lock.js';
import { KburError } from '../../shared/errors.js';
import { createLogger } from '../../shared/log.js';

const log = createLogger({ component: 'test', level: 'error', stream: 'stderr' });
const CLUSTER = 'demo';

/** A pid that surely runs no process any more: a child that already exited. */
function deadPid(): number {
  return spawnSync(process.execPath, ['-e', ''], { stdio: 'ignore' }).pid!;
}

async function rejection(p: Promise<unknown>): Promise<KburError> {
  try {
    await p;
  } catch (err) {
    if (KburError.is(err)) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

describe('repository lock (local repository)', function () {
  this.timeout(20_000);
  let dir: string;
  let repo: LocalRepository;
  const lockFile = (): string => join(dir, CLUSTER, 'kbur.lock');
  const request = (over: Partial<LockRequest> = {}): LockRequest => ({
    repository: repo,
    cluster: CLUSTER,
    operation: 'backup',
    waitMs: 0,
    log,
    signal: new AbortController().signal,
    ...over,
  });
  /** A lock record as another process would have written it. */
  const plant = (h: Partial<LockHolder>): Promise<void> =>
    writeFile(lockFile(), JSON.stringify({ ...newHolder('backup'), ...h }), { mode: 0o600 });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kbur-lock-unit-'));
    repo = new LocalRepository(dir);
    await repo.tryLock(CLUSTER, newHolder('setup'));
    await repo.removeLock(CLUSTER, undefined);
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('gives the lock to exactly one of 20 takers at once, written whole with its holder, 0600, no part file left', async () => {
    const holders = Array.from({ length: 20 }, () => newHolder('backup'));
    const won = await Promise.all(holders.map((h) => repo.tryLock(CLUSTER, h)));
    expect(won.filter(Boolean)).to.have.length(1);
    const winner = holders[won.indexOf(true)]!;
    const record = JSON.parse(await readFile(lockFile(), 'utf8')) as LockHolder;
    expect(record).to.deep.equal(winner);
    expect(record).to.include({ operation: 'backup', host: hostname(), pid: process.pid });
    expect(Date.parse(record.expiresAt) - Date.parse(record.startedAt)).to.equal(LEASE_MS);
    expect((await stat(lockFile())).mode & 0o777).to.equal(0o600);
    expect(await readdir(join(dir, CLUSTER))).to.deep.equal(['kbur.lock']);
  });

  it('removes a lock only for its own token, and of two removers of one lock exactly one succeeds', async () => {
    const h = newHolder('backup');
    expect(await repo.tryLock(CLUSTER, h)).to.equal(true);
    expect(await repo.removeLock(CLUSTER, newHolder('x').token)).to.equal(false);
    expect((await repo.readLock(CLUSTER))?.token).to.equal(h.token);
    const results = await Promise.all([repo.removeLock(CLUSTER, h.token), repo.removeLock(CLUSTER, h.token)]);
    expect(results.sort()).to.deep.equal([false, true]);
    expect(await repo.readLock(CLUSTER)).to.equal(undefined);
    expect(await readdir(join(dir, CLUSTER))).to.deep.equal([]);
  });

  it('renews the lease only while the token still holds the lock', async () => {
    const h = newHolder('backup');
    await repo.tryLock(CLUSTER, h);
    const later = { ...h, expiresAt: new Date(Date.now() + 2 * LEASE_MS).toISOString() };
    expect(await repo.renewLock(CLUSTER, later)).to.equal(true);
    expect((await repo.readLock(CLUSTER))?.expiresAt).to.equal(later.expiresAt);
    await repo.removeLock(CLUSTER, h.token);
    expect(await repo.renewLock(CLUSTER, later)).to.equal(false);
  });

  it('refuses at once, naming operation, host, pid and start, while a live process holds it', async () => {
    await plant({ operation: 'prune', pid: process.pid, startedAt: '2026-11-30T15:00:00.000Z' });
    const err = await rejection(acquireLock(request()));
    expect(err.code).to.equal('LOCKED');
    expect(err.message).to.equal(
      `the repository of cluster demo is locked by prune on host ${hostname()}, pid ${process.pid}, since 2026-11-30T15:00:00.000Z (${Math.round((Date.now() - Date.parse('2026-11-30T15:00:00.000Z')) / 1000)} s ago)`,
    );
    expect(err.hint).to.match(/--wait/);
  });

  it('waits up to --wait for a live holder: takes the lock once it is released, else refuses when the time is up', async () => {
    const other = newHolder('backup');
    await repo.tryLock(CLUSTER, other);
    let told: LockHolder | undefined;
    const started = Date.now();
    const timedOut = await rejection(acquireLock(request({ waitMs: 1200, onWait: (h) => (told = h) })));
    expect(timedOut.code).to.equal('LOCKED');
    expect(Date.now() - started).to.be.within(1200, 5000);
    expect(told?.token).to.equal(other.token);

    setTimeout(() => void repo.removeLock(CLUSTER, other.token), 700);
    const held = await acquireLock(request({ waitMs: 30_000 }));
    expect((await repo.readLock(CLUSTER))?.token).to.equal(held.holder.token);
    await held.release();
    expect(await repo.readLock(CLUSTER)).to.equal(undefined);
  });

  it('renews its lease while held, and tells the operation when someone broke it', async () => {
    const held = await acquireLock(request({ leaseMs: 400 }));
    const first = held.holder.expiresAt;
    await new Promise((r) => setTimeout(r, 300));
    const renewed = await repo.readLock(CLUSTER);
    expect(renewed?.token).to.equal(held.holder.token);
    expect(Date.parse(renewed!.expiresAt)).to.be.above(Date.parse(first));
    expect(held.lost.aborted).to.equal(false);

    await repo.removeLock(CLUSTER, undefined);
    await new Promise((r) => setTimeout(r, 300));
    expect(held.lost.aborted).to.equal(true);
    expect((held.lost.reason as KburError).message).to.equal(
      'this backup lost the repository lock of cluster demo: someone broke it (kbur unlock --force)',
    );
    await held.release();
  });

  it('reports a lock whose process is gone as stale, even with --wait, and does not break it', async () => {
    const pid = deadPid();
    await plant({ pid });
    const err = await rejection(acquireLock(request({ waitMs: 10_000 })));
    expect(err.code).to.equal('LOCK_STALE');
    expect(err.message).to.contain(`pid ${pid}`).and.contain(`process ${pid} no longer runs on this host`);
    expect(err.hint).to.contain('kbur unlock --force');
    expect((await repo.readLock(CLUSTER))?.pid).to.equal(pid);
  });

  it('reports an unreadable lock record as stale', async () => {
    await writeFile(lockFile(), 'not json');
    const err = await rejection(acquireLock(request()));
    expect(err.code).to.equal('LOCK_STALE');
    expect(err.message).to.match(/kbur\.lock is unreadable/);
  });

  it("lets a restore's own --resume take over its stale lock, and nothing else", async () => {
    await plant({ operation: 'restore', restoreId: '20261130T150000Z-0001', pid: deadPid() });
    expect((await rejection(acquireLock(request({ operation: 'restore', restoreId: '20261130T150000Z-0002' })))).code).to.equal(
      'LOCK_STALE',
    );
    expect((await rejection(acquireLock(request({ operation: 'backup' })))).code).to.equal('LOCK_STALE');
    const held = await acquireLock(request({ operation: 'restore', restoreId: '20261130T150000Z-0001' }));
    expect((await repo.readLock(CLUSTER))?.token).to.equal(held.holder.token);
    await held.release();
  });

  describe('staleness', () => {
    const now = new Date('2026-11-30T16:00:00Z');
    const holder = (h: Partial<LockHolder>): LockHolder => ({
      ...newHolder('backup', undefined, new Date('2026-11-30T15:59:00Z')),
      host: 'node-a',
      bootId: 'boot-1',
      pid: 4242,
      pidStart: '1000',
      ...h,
    });
    const probe = (p: Partial<HostProbe>): HostProbe => ({ host: 'node-a', bootId: 'boot-1', processStart: () => '1000', ...p });

    it('holds while its process runs and its lease is not over', () => {
      expect(staleReason(holder({}), now, probe({}))).to.equal(undefined);
    });
    it('is stale when the process is gone, the pid is another process now, or the host rebooted', () => {
      expect(staleReason(holder({}), now, probe({ processStart: () => undefined }))).to.equal('process 4242 no longer runs on this host');
      expect(staleReason(holder({}), now, probe({ processStart: () => '2000' }))).to.match(/another process now/);
      expect(staleReason(holder({}), now, probe({ bootId: 'boot-2' }))).to.match(/rebooted/);
    });
    it('holds while its process runs on this host, even past a lease its renewals could not extend (a full disk)', () => {
      expect(staleReason(holder({ expiresAt: '2026-11-30T15:00:00.000Z' }), now, probe({}))).to.equal(undefined);
    });
    it("judges another host's lock by its lease alone", () => {
      expect(staleReason(holder({ host: 'node-b' }), now, probe({ processStart: () => undefined }))).to.equal(undefined);
      const expired = holder({ host: 'node-b', expiresAt: '2026-11-30T15:58:00.000Z' });
      expect(staleReason(expired, now, probe({}))).to.equal(
        'its lease expired at 2026-11-30T15:58:00.000Z (120 s ago) without being renewed',
      );
    });
    it('sees this process as alive through the real /proc probe', () => {
      expect(staleReason(newHolder('backup'), new Date(), hostProbe())).to.equal(undefined);
      expect(staleReason({ ...newHolder('backup'), pid: deadPid() }, new Date(), hostProbe())).to.match(/no longer runs/);
    });
  });
});

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { KburError, errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import type { Repository } from './repository.js';

/** A holder renews its lease this often; a lease not renewed for LEASE_MS marks its holder gone. */
export const LEASE_MS = 120_000;
const POLL_MS = 500;

export const lockHolderSchema = z.object({
  /** Random: names this one holding, so that renew, release and a forced break never touch another's. */
  token: z.string().regex(/^[0-9a-f]{16,64}$/),
  /** backup | prune | restore | restore-dump ... */
  operation: z.string().min(1).max(64),
  /** The restore a `restore` lock belongs to: its own --resume/--rollback may continue under a stale one. */
  restoreId: z.string().optional(),
  host: z.string().min(1).max(255),
  pid: z.number().int().positive(),
  /** Linux boot id and the holder process's start time (clock ticks): a rebooted host or a reused pid is not the holder. */
  bootId: z.string().optional(),
  pidStart: z.string().optional(),
  startedAt: z.string(),
  /** Renewed while held. Past it the holder is presumed gone: the only test a process on another host can make. */
  expiresAt: z.string(),
});
export type LockHolder = z.infer<typeof lockHolderSchema>;

/** What this process knows about a holder's process: on this host, whether it still runs. */
export interface HostProbe {
  host: string;
  bootId: string | undefined;
  /** The start time of `pid` (as in LockHolder.pidStart), undefined when no such process runs. */
  processStart(pid: number): string | undefined | 'unknown';
}

/**
 * Why `holder` no longer holds the lock for real, or undefined when it may. On its own host the
 * process decides (gone, or its pid reused, or the host rebooted), even past the lease: a live
 * holder whose renewals failed (a full disk) is still running. Elsewhere only the lease can tell.
 */
export function staleReason(holder: LockHolder, now: Date, probe: HostProbe): string | undefined {
  if (holder.host === probe.host) {
    if (holder.bootId && probe.bootId && holder.bootId !== probe.bootId) return 'this host was rebooted since it took the lock';
    const start = probe.processStart(holder.pid);
    if (start === undefined) return `process ${holder.pid} no longer runs on this host`;
    if (start !== 'unknown' && holder.pidStart && start !== holder.pidStart) {
      return `process ${holder.pid} on this host is another process now (the holder is gone)`;
    }
    if (start !== 'unknown') return undefined;
  }
  const expires = Date.parse(holder.expiresAt);
  if (!(expires > now.getTime())) {
    return `its lease expired at ${holder.expiresAt} (${Math.round((now.getTime() - expires) / 1000)} s ago) without being renewed`;
  }
  return undefined;
}

/** The real probe: /proc of this Linux host. */
export function hostProbe(): HostProbe {
  return { host: hostname(), bootId: readBootId(), processStart };
}

let bootId: string | undefined | null = null;
function readBootId(): string | undefined {
  if (bootId === null) bootId = readProcSync('/proc/sys/kernel/random/boot_id');
  return bootId;
}

function readProcSync(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function processStart(pid: number): string | undefined | 'unknown' {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return undefined;
  }
  const stat = readProcSync(`/proc/${pid}/stat`);
  if (stat === undefined) return 'unknown';
  // Field 22 (starttime); the command name (field 2) may hold spaces, so count from its closing parenthesis.
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? 'unknown';
}

/** A new holder record for this process. */
export function newHolder(operation: string, restoreId?: string, now: Date = new Date(), leaseMs = LEASE_MS): LockHolder {
  const probe = hostProbe();
  const start = processStart(process.pid);
  return {
    token: randomBytes(16).toString('hex'),
    operation,
    ...(restoreId ? { restoreId } : {}),
    host: probe.host,
    pid: process.pid,
    ...(probe.bootId ? { bootId: probe.bootId } : {}),
    ...(start && start !== 'unknown' ? { pidStart: start } : {}),
    startedAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + leaseMs).toISOString(),
  };
}

/** "restore 20261130T150000Z-0a1f on host cp-1, pid 4711, since 2026-11-30T15:00:00.000Z (42 s ago)" */
export function describeHolder(h: LockHolder, now: Date = new Date()): string {
  const ago = Math.max(0, Math.round((now.getTime() - Date.parse(h.startedAt)) / 1000));
  return `${h.operation}${h.restoreId ? ` ${h.restoreId}` : ''} on host ${h.host}, pid ${h.pid}, since ${h.startedAt} (${ago} s ago)`;
}

/** A held lock: renewed in the background until released; `lost` aborts if the lock was taken away. */
export interface HeldLock {
  readonly holder: LockHolder;
  readonly lost: AbortSignal;
  release(): Promise<void>;
}

export interface LockRequest {
  repository: Repository;
  cluster: string;
  operation: string;
  /** A restore's id: its --resume/--rollback continue under its own stale lock (the journal says where it was). */
  restoreId?: string;
  /** How long to wait for a live holder; 0 refuses at once. */
  waitMs: number;
  log: Logger;
  signal: AbortSignal;
  /** Told once when the lock is held by another and this waits. */
  onWait?: (holder: LockHolder) => void;
  /** Default LEASE_MS; renewed every quarter of it. */
  leaseMs?: number;
}

/**
 * Takes the cluster's repository lock for one operation. A live holder: wait up to `waitMs`, then
 * LOCKED naming it. A stale one: LOCK_STALE naming it and why (only `kbur unlock --force` breaks
 * it), except a restore's own lock, which its --resume/--rollback take over.
 */
export async function acquireLock(req: LockRequest, probe: HostProbe = hostProbe()): Promise<HeldLock> {
  const deadline = Date.now() + req.waitMs;
  let told = false;
  for (;;) {
    req.signal.throwIfAborted();
    const holder = newHolder(req.operation, req.restoreId, new Date(), req.leaseMs);
    if (await req.repository.tryLock(req.cluster, holder)) return hold(req, holder);
    const current = await req.repository.readLock(req.cluster);
    if (!current) continue; // released between the two calls
    const stale = staleReason(current, new Date(), probe);
    if (stale) {
      if (req.restoreId && current.operation === 'restore' && current.restoreId === req.restoreId) {
        // The same restore, interrupted: its journal is the authority; one of two racing takers wins the removal.
        if (await req.repository.removeLock(req.cluster, current.token)) {
          req.log.warn('took over the stale lock of this restore', { holder: current, why: stale });
        }
        continue;
      }
      throw new KburError(
        'LOCK_STALE',
        `the repository of cluster ${req.cluster} is locked by ${describeHolder(current)}, which is stale: ${stale}`,
        {
          hint: `make sure that ${current.operation} is not running any more, then: kbur unlock --force (and run the ${current.operation} again, or --resume it)`,
        },
      );
    }
    if (Date.now() >= deadline) {
      throw new KburError('LOCKED', `the repository of cluster ${req.cluster} is locked by ${describeHolder(current)}`, {
        hint:
          req.waitMs > 0
            ? `it is still running after ${Math.round(req.waitMs / 1000)} s; wait longer (--wait 30m) or try again once it is done`
            : 'one operation at a time per cluster: try again once it is done, or wait for it with --wait 10m',
      });
    }
    if (!told) {
      told = true;
      req.onWait?.(current);
    }
    await sleep(Math.min(POLL_MS, Math.max(0, deadline - Date.now())), undefined, { signal: req.signal }).catch(() => undefined);
  }
}

function hold(req: LockRequest, holder: LockHolder): HeldLock {
  const leaseMs = req.leaseMs ?? LEASE_MS;
  const lost = new AbortController();
  let renewing: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    renewing = renewing.then(async () => {
      const renewed = { ...holder, expiresAt: new Date(Date.now() + leaseMs).toISOString() };
      try {
        if (await req.repository.renewLock(req.cluster, renewed)) return;
        lost.abort(
          new KburError(
            'LOCKED',
            `this ${req.operation} lost the repository lock of cluster ${req.cluster}: someone broke it (kbur unlock --force)`,
            {
              hint: 'run it again; never break the lock of an operation that is still running',
            },
          ),
        );
        clearInterval(timer);
      } catch (err) {
        // A repository briefly unreachable: the lease has room for the next tries.
        req.log.warn('could not renew the repository lock', { error: errorMessage(err) });
      }
    });
  }, leaseMs / 4).unref();
  return {
    holder,
    lost: lost.signal,
    release: async () => {
      clearInterval(timer);
      await renewing;
      await req.repository.removeLock(req.cluster, holder.token);
    },
  };
}

/** Runs `fn` under the cluster's lock, released however fn ends; fn's signal also aborts if the lock is lost. */
export async function withLock<T>(req: LockRequest, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const lock = await acquireLock(req);
  try {
    return await fn(AbortSignal.any([req.signal, lock.lost]));
  } finally {
    await lock.release().catch((err: unknown) => req.log.warn('could not release the repository lock', { error: errorMessage(err) }));
  }
}

/** A lock record read from storage: validated, or LOCK_STALE naming where it is and what to do. */
export function parseLockRecord(text: string, where: string): LockHolder {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const parsed = lockHolderSchema.safeParse(json);
  if (parsed.success) return parsed.data;
  throw new KburError('LOCK_STALE', `the repository lock ${where} is unreadable: not a kbur lock record`, {
    hint: 'make sure no kbur operation runs on this cluster, then: kbur unlock --force',
  });
}

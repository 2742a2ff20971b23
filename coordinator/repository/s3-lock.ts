import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../shared/log.js';
import { parseLockRecord, type LockHolder } from './lock.js';

/** Lease-object locks (servers without conditional PUT): how long a taker waits before it rereads the record. */
const LEASE_SETTLE_MS = 2000;

/** The S3 calls the lock makes on the repository's bucket (S3Repository.lockObjects). */
export interface LockObjects {
  readonly location: string;
  readonly log: Logger;
  url(key: string): string;
  getText(key: string): Promise<string | undefined>;
  putText(key: string, text: string): Promise<void>;
  /** PUT If-None-Match: *: `exists` when the server refused it (the key exists, or is being written). */
  putIfAbsent(key: string, text: string): Promise<'written' | 'exists' | 'unsupported'>;
  /** A delete whose failure is reported (`what` names it). */
  remove(key: string, what: string): Promise<void>;
  /** A delete whose failure does not matter. */
  removeQuietly(key: string): Promise<void>;
}

/**
 * The lock is the object <prefix>/<cluster>/kbur.lock. Where the server honours a conditional PUT
 * (If-None-Match: *: AWS S3, MinIO, recent Ceph RGW) it is created atomically: of two takers, the
 * server refuses one (412). Where it does not (it ignores the header and overwrites: fauxqs alone),
 * a lease object instead: the record is put only if none is there, then read back after
 * LEASE_SETTLE_MS; of takers racing within that window, the last writer holds it and the others
 * see its token and back off. Which one the server gave is logged (info).
 */
export class S3Lock {
  private conditional: Promise<boolean> | undefined;

  constructor(
    private readonly objects: LockObjects,
    /** `<prefix>/<cluster>/`: where the lock and the probe object live. */
    private readonly clusterPrefix: (cluster: string) => string,
  ) {}

  async tryLock(cluster: string, holder: LockHolder): Promise<boolean> {
    const key = this.key(cluster);
    const body = JSON.stringify(holder, null, 2) + '\n';
    if (await this.conditionalPuts(cluster)) return (await this.objects.putIfAbsent(key, body)) === 'written';
    if ((await this.objects.getText(key)) !== undefined) return false;
    await this.objects.putText(key, body);
    await sleep(LEASE_SETTLE_MS);
    const after = await this.objects.getText(key);
    return after !== undefined && parseLockRecord(after, this.objects.url(key)).token === holder.token;
  }

  async readLock(cluster: string): Promise<LockHolder | undefined> {
    const key = this.key(cluster);
    const text = await this.objects.getText(key);
    return text === undefined ? undefined : parseLockRecord(text, this.objects.url(key));
  }

  async renewLock(cluster: string, holder: LockHolder): Promise<boolean> {
    const current = await this.readLock(cluster).catch(() => undefined);
    if (current?.token !== holder.token) return false;
    await this.objects.putText(this.key(cluster), JSON.stringify(holder, null, 2) + '\n');
    return true;
  }

  /** Reread, then deleted: of two removers racing on one lock both may report it removed (S3 has no rename). */
  async removeLock(cluster: string, token: string | undefined): Promise<boolean> {
    const key = this.key(cluster);
    const text = await this.objects.getText(key);
    if (text === undefined) return false;
    if (token !== undefined) {
      let held: string | undefined;
      try {
        held = parseLockRecord(text, this.objects.url(key)).token;
      } catch {
        held = undefined;
      }
      if (held !== token) return false;
    }
    await this.objects.remove(key, `cannot remove the lock ${this.objects.url(key)}`);
    return true;
  }

  private key(cluster: string): string {
    return `${this.clusterPrefix(cluster)}kbur.lock`;
  }

  /** Whether the server refuses a second PUT If-None-Match: * of one key, asked once per process with a probe object. */
  private conditionalPuts(cluster: string): Promise<boolean> {
    this.conditional ??= (async () => {
      const key = `${this.clusterPrefix(cluster)}kbur.lock-probe-${randomBytes(8).toString('hex')}`;
      try {
        const first = await this.objects.putIfAbsent(key, 'probe');
        return first !== 'unsupported' && (first === 'exists' || (await this.objects.putIfAbsent(key, 'probe')) === 'exists');
      } finally {
        await this.objects.removeQuietly(key);
      }
    })().then((conditional) => {
      this.objects.log.info(
        conditional ? 'S3 lock: conditional PUT (If-None-Match: *)' : 'S3 lock: lease object (the server ignores If-None-Match)',
        { location: this.objects.location },
      );
      return conditional;
    });
    return this.conditional;
  }
}

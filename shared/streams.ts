import { createHash, type Hash } from 'node:crypto';
import { createWriteStream, fdatasync, type WriteStream } from 'node:fs';
import { chmod, link, open, rename, rm } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { Transform, Writable, type TransformCallback } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { KburError } from './errors.js';

const SHA256_SIZE = 32;

/**
 * sha256 of a byte stream, and, for an etcd snapshot, its own integrity hash in the same pass.
 * A snapshot taken through etcd's Snapshot API ends with the sha256 of everything before it, and
 * its size is then a multiple of 512 plus 32 (etcd's own check in `snapshot restore`).
 */
export class StreamDigest {
  /** Hash of every byte but the last 32 seen so far. */
  private readonly prefix: Hash = createHash('sha256');
  private tail: Buffer = Buffer.alloc(0);
  size = 0;

  update(chunk: Buffer): void {
    this.size += chunk.length;
    if (chunk.length >= SHA256_SIZE) {
      this.prefix.update(this.tail);
      this.prefix.update(chunk.subarray(0, chunk.length - SHA256_SIZE));
      this.tail = Buffer.from(chunk.subarray(chunk.length - SHA256_SIZE));
    } else {
      const joined = Buffer.concat([this.tail, chunk]);
      const cut = Math.max(0, joined.length - SHA256_SIZE);
      this.prefix.update(joined.subarray(0, cut));
      this.tail = joined.subarray(cut);
    }
  }

  /** Why these bytes are not a whole etcd snapshot, or null when its integrity hash holds. */
  snapshotIntegrityError(): KburError | null {
    if (this.size % 512 !== SHA256_SIZE) {
      return new KburError(
        'DATA_LOSS',
        `etcd snapshot of ${this.size} bytes has no integrity hash (its size is not 512*n+32): it is truncated or not a snapshot`,
      );
    }
    const want = this.tail.toString('hex');
    const got = this.prefix.copy().digest('hex');
    if (want !== got) {
      return new KburError('DATA_LOSS', `etcd snapshot integrity hash mismatch: the file ends with ${want}, its content hashes to ${got}`);
    }
    return null;
  }

  /** sha256 of all bytes, hex; call once, at the end. */
  sha256(): string {
    return this.prefix.update(this.tail).digest('hex');
  }
}

/** Passes bytes through, digesting them; with `snapshot`, fails at the end if the integrity hash does not hold. */
export class DigestTransform extends Transform {
  readonly digest = new StreamDigest();

  constructor(private readonly opts: { snapshot?: boolean } = {}) {
    super({ highWaterMark: 1 << 20 });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.digest.update(chunk);
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    done(this.opts.snapshot ? this.digest.snapshotIntegrityError() : null);
  }
}

export interface FileDigest {
  size: number;
  sha256: string;
}

/** sha256 and size of a file, streamed; with `snapshot`, also checks the etcd integrity hash. */
export async function digestFile(path: string, opts: { snapshot?: boolean; signal?: AbortSignal } = {}): Promise<FileDigest> {
  const digest = new StreamDigest();
  // One buffer, read into again and again: a fresh buffer per chunk costs page faults on every MiB.
  const buf = Buffer.allocUnsafeSlow(1 << 20);
  const file = await open(path, 'r');
  try {
    for (;;) {
      opts.signal?.throwIfAborted();
      const { bytesRead } = await file.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      digest.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await file.close();
  }
  const integrity = opts.snapshot ? digest.snapshotIntegrityError() : null;
  if (integrity) throw integrity;
  return { size: digest.size, sha256: digest.sha256() };
}

/**
 * Rereads an etcd snapshot on disk: DATA_LOSS, naming it `what`, unless its integrity hash holds and
 * its size and sha256 are `want`'s. For copies kept or staged on a node, before anything relies on them.
 */
export async function checkSnapshotFile(
  path: string,
  want: { size: number; sha256: string },
  what: string,
  opts: { signal?: AbortSignal; hint?: string } = {},
): Promise<FileDigest> {
  let got: FileDigest;
  try {
    got = await digestFile(path, { snapshot: true, signal: opts.signal });
  } catch (err) {
    throw new KburError('DATA_LOSS', `${what} ${path} is damaged: ${(err as Error).message}`, { cause: err, hint: opts.hint });
  }
  if (got.size !== want.size || got.sha256 !== want.sha256) {
    throw new KburError(
      'DATA_LOSS',
      `${what} ${path} has ${got.size} bytes with sha256 ${got.sha256}; expected ${want.size} bytes with sha256 ${want.sha256}`,
      { hint: opts.hint },
    );
  }
  return got;
}

/** Bytes written between two early flushes of an AtomicFile (RocksDB's bytes_per_sync does the same). */
const SYNC_EVERY = 32 << 20;
const SYNC_CHECK_MS = 100;

/**
 * A file that appears under its final name only when it is whole: bytes go to `<name>.part`
 * (mode 0600), `commit()` fsyncs and closes it, renames it and fsyncs the directory; `abort()`
 * removes the part file. Nothing else ever sees a half-written file under the final name.
 *
 * While it is written, every SYNC_EVERY bytes are flushed to disk in the background, so that the
 * fsync of commit() finds little left to write. Figure: at the end of a 300 MiB snapshot 30 ms instead
 * of 150 (backup ratio 1.38 -> 1.30). Guarded by test/unit/library-assumptions.test.ts (WriteStream.fd).
 */
export class AtomicFile {
  readonly partPath: string;
  readonly stream: WriteStream;
  private settled = false;
  private error: Error | undefined;
  private readonly syncTimer: NodeJS.Timeout;
  private synced = 0;
  private syncing: Promise<void> | undefined;

  /**
   * `mode` 0600 unless said otherwise: what kbur writes is private but for a few reports (metrics).
   * A mode given is set exactly, whatever the umask (kbur-backup.service runs with UMask=0077).
   * `partPath`: a name of its own for a file that several processes may write at once (a lock).
   */
  constructor(
    readonly path: string,
    private readonly opts: { mode?: number; partPath?: string } = {},
  ) {
    this.partPath = opts.partPath ?? `${path}.part`;
    this.stream = createWriteStream(this.partPath, { mode: opts.mode ?? 0o600, flush: true, highWaterMark: 1 << 20 });
    // Kept, not thrown: a write still in flight when abort() destroys the stream fails, and that
    // must not crash the process; commit() reports any error instead.
    this.stream.on('error', (err) => {
      this.error ??= err;
    });
    this.syncTimer = setInterval(() => this.syncEarly(), SYNC_CHECK_MS).unref();
  }

  private syncEarly(): void {
    // fs.WriteStream has its fd once open; @types/node does not declare it.
    const fd = (this.stream as WriteStream & { fd?: number | null }).fd;
    const written = this.stream.bytesWritten;
    if (this.syncing || typeof fd !== 'number' || written - this.synced < SYNC_EVERY) return;
    this.syncing = new Promise((resolve) =>
      fdatasync(fd, (err) => {
        if (err) this.error ??= err;
        this.synced = written;
        this.syncing = undefined;
        resolve();
      }),
    );
  }

  /** Stops the early flushes and waits for one in flight, before the file is closed. */
  private async stopSyncing(): Promise<void> {
    clearInterval(this.syncTimer);
    await this.syncing;
  }

  /** With `noOverwrite`, an existing file under the final name is an error and stays as it was. */
  async commit(opts: { noOverwrite?: boolean } = {}): Promise<void> {
    if (this.settled) throw new KburError('INTERNAL', `${basename(this.path)} was already committed or aborted`);
    this.settled = true;
    await this.stopSyncing();
    if (this.error) throw this.error;
    this.stream.end();
    await finished(this.stream);
    await waitClosed(this.stream);
    if (this.error) throw this.error;
    if (this.opts.mode !== undefined) await chmod(this.partPath, this.opts.mode);
    if (opts.noOverwrite) {
      // link() fails with EEXIST instead of replacing: atomic and never overwrites.
      await link(this.partPath, this.path);
      await rm(this.partPath);
    } else {
      await rename(this.partPath, this.path);
    }
    await fsyncDir(dirname(this.path));
  }

  /** Drops the part file; safe to call after a failed commit too. */
  async abort(): Promise<void> {
    this.settled = true;
    await this.stopSyncing();
    this.stream.destroy();
    await waitClosed(this.stream);
    await rm(this.partPath, { force: true });
  }
}

function waitClosed(stream: Writable): Promise<void> {
  if ((stream as Writable & { closed?: boolean }).closed) return Promise.resolve();
  return new Promise((resolve) => stream.once('close', () => resolve()));
}

/** Whole small files (manifests, journals) written the same way as artifacts. */
export async function writeFileAtomic(
  path: string,
  data: string | Buffer,
  opts: { noOverwrite?: boolean; mode?: number; partPath?: string } = {},
): Promise<void> {
  const file = new AtomicFile(path, { mode: opts.mode, partPath: opts.partPath });
  try {
    await pipeline(async function* () {
      yield typeof data === 'string' ? Buffer.from(data) : data;
    }, file.stream);
    await file.commit(opts);
  } catch (err) {
    await file.abort();
    throw err;
  }
}

/** fsync of a directory (its entries: a rename into it), or of a file (its bytes). */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** fsyncDir of every path, a few at a time. */
export async function fsyncAll(paths: Iterable<string>, concurrency = 8): Promise<void> {
  const queue = [...paths];
  await Promise.all(
    Array.from({ length: Math.min(concurrency, queue.length) }, async () => {
      for (let p = queue.shift(); p !== undefined; p = queue.shift()) await fsyncDir(p);
    }),
  );
}

/** Regroups a byte stream into chunks of about `size` bytes (fewer, larger gRPC messages). */
export async function* rechunk(source: AsyncIterable<Buffer>, size: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let held = 0;
  for await (const chunk of source) {
    parts.push(chunk);
    held += chunk.length;
    if (held >= size) {
      yield parts.length === 1 ? parts[0]! : Buffer.concat(parts, held);
      parts = [];
      held = 0;
    }
  }
  if (held > 0) yield Buffer.concat(parts, held);
}

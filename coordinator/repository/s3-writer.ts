import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { CompletedPart } from '@aws-sdk/client-s3';
import { KburError } from '../../shared/errors.js';
import type { ArtifactWriter } from './repository.js';

/**
 * Multipart part size (S3's minimum, for every part but the last) and how many parts of one
 * artifact are uploaded at once. A writer owns at most QUEUE_SIZE + 1 part buffers: 2 x 5 MiB,
 * whatever the artifact's size. One part in flight keeps up: a part fills in ~60 ms and uploads in
 * less on loopback; a second one cost a part of RSS and no measured time. 5 MiB rather than 8: the
 * coordinator's peak RSS of a 300 MiB backup 157 -> 152 MiB on average (7 and 10 runs; glibc's heap
 * makes one run vary by +-8). S3's 10,000 parts bound an artifact at 48.8 GiB (a snapshot: 8 GiB).
 */
export const PART_SIZE = 5 << 20;
export const QUEUE_SIZE = 1;
const FIRST_BUFFER = 64 << 10;

/** The S3 calls an artifact writer makes, for one object key (S3Repository.objectUpload). */
export interface ObjectUpload {
  readonly url: string;
  /** One request for the whole object: an artifact that fits in one part. */
  put(body: Buffer): Promise<void>;
  create(): Promise<string>;
  part(uploadId: string, partNumber: number, body: Buffer): Promise<CompletedPart>;
  complete(uploadId: string, parts: CompletedPart[]): Promise<void>;
  /** Aborts the multipart upload (with retries; logs what it could not abort). */
  abort(uploadId: string): Promise<void>;
  toKburError(err: unknown, what: string): KburError;
}

/**
 * An artifact uploaded as it is written. Bytes are copied into part buffers that are reused for
 * the artifact's whole life: a part goes up (UploadPart) as soon as it is full, an artifact that
 * fits in one part is one PutObject, and the object exists only once commit() completed it.
 * Reusing the buffers (not lib-storage, which joins each part into a new 8 MiB buffer) is what
 * keeps the coordinator's memory and garbage collection flat: every other buffer of the stream dies
 * young. A failed request errors the stream at once (the writer stops), and the multipart upload
 * is aborted so that the server drops its parts.
 */
export class S3ArtifactWriter implements ArtifactWriter {
  readonly stream: Writable;
  private current: Buffer | undefined;
  private filled = 0;
  private readonly spare: Buffer[] = [];
  private allocated = 0;
  private partNumber = 0;
  private uploadId: Promise<string> | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly parts: CompletedPart[] = [];
  private failure: KburError | undefined;
  private cleaned = false;

  constructor(private readonly upload: ObjectUpload) {
    this.stream = new Writable({
      highWaterMark: 256 << 10,
      write: (chunk: Buffer, _enc, done) => this.absorb(chunk, 0, done),
      final: (done) => {
        this.finish().then(() => done(), done);
      },
    });
    // Errors are reported by commit() and by the writer's next write; none may go unhandled.
    this.stream.on('error', () => undefined);
  }

  async commit(): Promise<void> {
    this.stream.end();
    await finished(this.stream).catch(() => undefined);
    if (this.failure ?? !this.stream.writableFinished) {
      const err = this.failure ?? new KburError('INTERNAL', `upload of ${this.upload.url} did not finish`);
      await this.settle();
      await this.cleanup();
      throw err;
    }
    this.cleaned = true;
  }

  async abort(): Promise<void> {
    this.fail(new KburError('CANCELLED', `upload of ${this.upload.url} abandoned`));
    await this.settle();
    await this.cleanup();
  }

  /** Copies `chunk` from `offset` into part buffers, sending each as it fills; waits for a free buffer when all are in flight. */
  private absorb(chunk: Buffer, offset: number, done: (err?: Error | null) => void): void {
    while (offset < chunk.length) {
      if (this.failure) return done(this.failure);
      if (!this.current) {
        const buffer = this.spare.pop() ?? (this.allocated <= QUEUE_SIZE ? this.allocate() : undefined);
        if (!buffer) {
          void Promise.race(this.inFlight).then(() => this.absorb(chunk, offset, done));
          return;
        }
        this.current = buffer;
        this.filled = 0;
      }
      if (this.filled === this.current.length) this.grow();
      const n = chunk.copy(this.current, this.filled, offset);
      this.filled += n;
      offset += n;
      if (this.filled === PART_SIZE) this.sendCurrent();
    }
    done(this.failure);
  }

  /**
   * The first buffer starts small and doubles up to a part: a node archive or a dump of a few KiB
   * takes no whole part buffer, and freeing one would raise glibc's mmap threshold, after which the
   * stream's other buffers fragment its heap (6 MiB more peak RSS, measured).
   */
  private allocate(): Buffer {
    this.allocated++;
    return Buffer.allocUnsafeSlow(this.allocated === 1 ? FIRST_BUFFER : PART_SIZE);
  }

  private grow(): void {
    const bigger = Buffer.allocUnsafeSlow(Math.min(PART_SIZE, this.current!.length * 2));
    this.current!.copy(bigger, 0, 0, this.filled);
    this.current = bigger;
  }

  private sendCurrent(): void {
    const buffer = this.current!;
    const body = buffer.subarray(0, this.filled);
    const partNumber = ++this.partNumber;
    this.current = undefined;
    this.filled = 0;
    this.uploadId ??= this.upload.create();
    const sent: Promise<void> = this.uploadId
      .then((id) => this.upload.part(id, partNumber, body))
      .then(
        (part) => {
          this.parts.push(part);
          this.spare.push(buffer);
        },
        (err: unknown) => this.fail(this.upload.toKburError(err, `upload of ${this.upload.url} failed`)),
      )
      .finally(() => this.inFlight.delete(sent));
    this.inFlight.add(sent);
  }

  private async finish(): Promise<void> {
    if (this.failure) throw this.failure;
    try {
      if (this.partNumber === 0) {
        await this.upload.put((this.current ?? Buffer.alloc(0)).subarray(0, this.filled));
        return;
      }
      if (this.filled > 0) this.sendCurrent();
      await this.settle();
      if (this.failure) throw this.failure;
      const parts = [...this.parts].sort((a, b) => a.PartNumber! - b.PartNumber!);
      await this.upload.complete(await this.uploadId!, parts);
    } catch (err) {
      this.fail(this.upload.toKburError(err, `upload of ${this.upload.url} failed`));
      throw this.failure!;
    } finally {
      this.current = undefined;
      this.spare.length = 0;
    }
  }

  /** Waits until no part is in flight. */
  private async settle(): Promise<void> {
    while (this.inFlight.size) await Promise.allSettled([...this.inFlight]);
  }

  private fail(err: KburError): void {
    this.failure ??= err;
    this.stream.destroy(this.failure);
  }

  private async cleanup(): Promise<void> {
    if (this.cleaned) return;
    this.cleaned = true;
    const id = await this.uploadId?.catch(() => undefined);
    if (id) await this.upload.abort(id);
  }
}

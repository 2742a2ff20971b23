import { PassThrough, Writable } from 'node:stream';
import type { Upload } from '@aws-sdk/lib-storage';
import { KburError } from '../../shared/errors.js';
import type { ArtifactWriter } from './repository.js';
import type { S3Repository } from './s3.js';

/**
 * An artifact uploaded as it is written: bytes go through a bounded pipe into a multipart upload
 * that completes on commit(). A failed upload errors the stream at once (the writer stops), and
 * its multipart upload is aborted.
 */
export class S3ArtifactWriter implements ArtifactWriter {
  /** What the writer writes to: it fails, with the upload's error, as soon as the upload does. */
  readonly stream: Writable;
  /** What the upload reads. */
  private readonly body = new PassThrough({ highWaterMark: 1 << 20 });
  private readonly upload: Upload;
  private readonly settled: Promise<void>;
  private failure: KburError | undefined;
  private cleaned = false;

  constructor(
    private readonly repo: S3Repository,
    private readonly key: string,
  ) {
    this.stream = new Writable({
      highWaterMark: 1 << 20,
      write: (chunk: Buffer, _enc, done) => {
        if (this.failure) return done(this.failure);
        if (this.body.write(chunk)) return done();
        this.body.once('drain', () => done());
      },
      final: (done) => {
        this.body.end();
        done();
      },
    });
    // Errors are reported by commit() and by the writer's next write; none may go unhandled.
    this.stream.on('error', () => undefined);
    this.body.on('error', () => undefined);
    this.upload = repo.uploadTo(key, this.body);
    this.settled = this.upload.done().then(
      () => undefined,
      (err: unknown) => this.fail(repo.toKburError(err, `upload of ${repo.url(key)} failed`)),
    );
  }

  async commit(): Promise<void> {
    this.stream.end();
    await this.settled;
    if (this.failure) {
      await this.cleanup();
      throw this.failure;
    }
    this.cleaned = true;
  }

  async abort(): Promise<void> {
    this.fail(new KburError('CANCELLED', `upload of ${this.repo.url(this.key)} abandoned`));
    await this.settled;
    await this.cleanup();
  }

  private fail(err: KburError): void {
    this.failure ??= err;
    this.stream.destroy(this.failure);
    this.body.destroy(this.failure);
  }

  private async cleanup(): Promise<void> {
    if (this.cleaned) return;
    this.cleaned = true;
    if (this.upload.uploadId) await this.repo.abortMultipart(this.key, this.upload.uploadId);
  }
}

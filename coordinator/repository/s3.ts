import { posix } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AbortMultipartUploadCommand,
  ChecksumAlgorithm,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
  type ListObjectsV2CommandOutput,
} from '@aws-sdk/client-s3';
import { KburError, errorMessage } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { BACKUP_ID, checkId, parseManifest, verificationSchema, type Manifest, type Verification } from '../../shared/manifest.js';
import { StreamDigest, type FileDigest } from '../../shared/streams.js';
import type { S3RepositoryConfig } from '../config.js';
import type { LockHolder } from './lock.js';
import type { BackupListing, BackupWriter, Repository } from './repository.js';
import { readCredentialsFile } from './s3-credentials.js';
import { S3Lock, type LockObjects } from './s3-lock.js';
import { S3ArtifactWriter, type ObjectUpload } from './s3-writer.js';

/** Small JSON objects (manifest, verify.json, journal) are read whole; anything larger is not ours. */
const MAX_JSON_BYTES = 16 << 20;
const LIST_CONCURRENCY = 8;
/** AbortMultipartUpload attempts, each with the SDK's own retries, a second apart then two. */
const ABORT_ATTEMPTS = 3;

/**
 * A repository in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW) with the local repository's
 * layout under `<prefix>/`. Artifacts stream through multipart uploads (memory stays flat);
 * an object exists under its key only once its upload completed, and a failed upload is aborted
 * so that the server drops its parts. manifest.json is put last, as on disk.
 */
export class S3Repository implements Repository {
  readonly location: string;
  private readonly base: string;
  /** The endpoint, for messages. */
  private readonly server: string;
  private readonly lock: S3Lock;

  private constructor(
    private readonly config: S3RepositoryConfig,
    private readonly client: S3Client,
    private readonly secrets: string[],
    private readonly log: Logger,
    region: string,
  ) {
    this.base = config.prefix ? `${config.prefix}/` : '';
    this.location = `s3://${config.bucket}${config.prefix ? `/${config.prefix}` : ''}`;
    this.server = config.endpoint ?? `AWS S3 (${region})`;
    this.lock = new S3Lock(this.lockObjects(), (cluster) => `${this.base}${cluster}/`);
  }

  /** Credentials from `credentialsFile`, else the standard AWS chain (environment, profile, instance role). */
  static async open(config: S3RepositoryConfig, opts: { log: Logger; requestTimeoutMs: number }): Promise<S3Repository> {
    const credentials = config.credentialsFile ? await readCredentialsFile(config.credentialsFile) : undefined;
    const region = config.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
    const client = new S3Client({
      region,
      ...(config.endpoint ? { endpoint: config.endpoint } : {}),
      forcePathStyle: config.forcePathStyle,
      ...(credentials ? { credentials } : {}),
      maxAttempts: 3,
      // A server that accepts no connection fails fast; one that stops sending fails after the stall timeout.
      requestHandler: { connectionTimeout: 10_000, requestTimeout: opts.requestTimeoutMs },
    });
    const secrets = credentials ? [credentials.accessKeyId, credentials.secretAccessKey, credentials.sessionToken ?? ''] : [];
    return new S3Repository(config, client, secrets.filter(Boolean), opts.log, region);
  }

  async createBackup(cluster: string, id: string): Promise<BackupWriter> {
    const dir = this.backupPrefix(cluster, id);
    // Before any agent streams: a missing bucket, refused credentials or a dead endpoint fail here.
    const existing = await this.send(`cannot write backup ${id}`, () =>
      this.client.send(new ListObjectsV2Command({ Bucket: this.config.bucket, Prefix: dir, MaxKeys: 1 })),
    );
    if (existing.KeyCount)
      throw new KburError('FAILED_PRECONDITION', `${this.url(dir)} already holds objects; a backup is never written over`);
    return {
      id,
      location: this.url(dir),
      artifact: (relPath: string) => Promise.resolve(new S3ArtifactWriter(this.objectUpload(this.inside(dir, relPath)))),
      discard: async (relPath: string) => {
        await this.send(`cannot remove ${relPath} of backup ${id}`, () =>
          this.client.send(new DeleteObjectCommand({ Bucket: this.config.bucket, Key: this.inside(dir, relPath) })),
        );
      },
      writeManifest: (manifest: Manifest) => this.putJson(`${dir}manifest.json`, manifest),
    };
  }

  async listBackups(cluster: string): Promise<BackupListing[]> {
    const ids = (await this.listFolders(`${this.base}${cluster}/backups/`)).filter((id) => BACKUP_ID.test(id));
    const listings: BackupListing[] = [];
    for (let i = 0; i < ids.length; i += LIST_CONCURRENCY) {
      listings.push(
        ...(await Promise.all(
          ids.slice(i, i + LIST_CONCURRENCY).map(async (id): Promise<BackupListing> => {
            try {
              return { id, manifest: await this.readManifest(cluster, id) };
            } catch (err) {
              return { id, problem: errorMessage(err) };
            }
          }),
        )),
      );
    }
    return listings;
  }

  async readManifest(cluster: string, id: string): Promise<Manifest> {
    const dir = this.backupPrefix(cluster, id);
    const text = await this.getText(`${dir}manifest.json`);
    if (text === undefined) {
      const any = await this.send(`cannot read backup ${id}`, () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.config.bucket, Prefix: dir, MaxKeys: 1 })),
      );
      throw any.KeyCount
        ? new KburError('FAILED_PRECONDITION', `backup ${id} has no manifest.json: it never completed (interrupted, or still running)`, {
            hint: 'use another backup (kbur list); an incomplete backup is never restored from',
          })
        : new KburError('NOT_FOUND', `no backup ${id} in ${this.url(`${this.base}${cluster}/backups/`)}`, {
            hint: 'kbur list shows the backups there are',
          });
    }
    return parseManifest(safeJson(text), this.url(`${dir}manifest.json`));
  }

  async openArtifact(cluster: string, id: string, relPath: string): Promise<Readable> {
    const key = this.inside(this.backupPrefix(cluster, id), relPath);
    const body = await this.getBody(key, `artifact ${relPath} of backup ${id}`);
    if (!body) throw new KburError('DATA_LOSS', `artifact ${relPath} of backup ${id} is missing: no object ${this.url(key)}`);
    return body;
  }

  async digestArtifact(
    cluster: string,
    id: string,
    relPath: string,
    opts: { snapshot: boolean; signal: AbortSignal },
  ): Promise<FileDigest> {
    const key = this.inside(this.backupPrefix(cluster, id), relPath);
    const body = await this.getBody(key, `artifact ${relPath} of backup ${id}`, opts.signal);
    if (!body) throw new KburError('DATA_LOSS', `no object ${this.url(key)}`);
    const digest = new StreamDigest();
    try {
      for await (const chunk of body) {
        opts.signal.throwIfAborted();
        digest.update(chunk as Buffer);
      }
    } catch (err) {
      if (opts.signal.aborted) throw new KburError('CANCELLED', `reading ${this.url(key)} was cancelled`, { cause: opts.signal.reason });
      throw this.toKburError(err, `cannot read ${this.url(key)}`);
    } finally {
      body.destroy();
    }
    const integrity = opts.snapshot ? digest.snapshotIntegrityError() : null;
    if (integrity) throw integrity;
    return { size: digest.size, sha256: digest.sha256() };
  }

  localFile(): undefined {
    return undefined;
  }

  artifactLocation(cluster: string, id: string, relPath: string): string {
    return this.url(this.inside(this.backupPrefix(cluster, id), relPath));
  }

  writeVerification(cluster: string, id: string, verification: Verification): Promise<void> {
    return this.putJson(`${this.backupPrefix(cluster, id)}verify.json`, verification);
  }

  async readVerification(cluster: string, id: string): Promise<Verification | undefined> {
    const text = await this.getText(`${this.backupPrefix(cluster, id)}verify.json`).catch(() => undefined);
    const parsed = verificationSchema.safeParse(text === undefined ? undefined : safeJson(text));
    return parsed.success ? parsed.data : undefined;
  }

  async writeJournal(cluster: string, restoreId: string, journal: string): Promise<void> {
    // A PUT replaces an object whole or not at all: the journal is never seen half-written.
    await this.putText(this.journalKey(cluster, restoreId), journal);
  }

  readJournal(cluster: string, restoreId: string): Promise<string | undefined> {
    return this.getText(this.journalKey(cluster, restoreId));
  }

  async listRestores(cluster: string): Promise<string[]> {
    return (await this.listFolders(`${this.base}${cluster}/restores/`)).filter((id) => BACKUP_ID.test(id));
  }

  /** manifest.json first (a half-deleted set is never taken for a whole one), then every object, then unfinished uploads. */
  async deleteBackup(cluster: string, id: string): Promise<void> {
    const dir = this.backupPrefix(cluster, id);
    await this.send(`cannot delete ${this.url(`${dir}manifest.json`)}`, () =>
      this.client.send(new DeleteObjectCommand({ Bucket: this.config.bucket, Key: `${dir}manifest.json` })),
    );
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page: ListObjectsV2CommandOutput = await this.send(`cannot list ${this.url(dir)}`, () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.config.bucket, Prefix: dir, ContinuationToken: token })),
      );
      keys.push(...(page.Contents ?? []).flatMap((o) => (o.Key ? [o.Key] : [])));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    for (let i = 0; i < keys.length; i += 1000) {
      const out = await this.send(`cannot delete the objects of ${this.url(dir)}`, () =>
        this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.config.bucket,
            Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true },
          }),
        ),
      );
      const failed = out.Errors?.[0];
      if (failed) throw new KburError('UNAVAILABLE', `cannot delete ${this.url(failed.Key ?? dir)}: ${failed.Code}: ${failed.Message}`);
    }
    await this.abortUploadsUnder(dir);
  }

  /** Object storage has no free-space figure to give. */
  space(): Promise<undefined> {
    return Promise.resolve(undefined);
  }

  tryLock(cluster: string, holder: LockHolder): Promise<boolean> {
    return this.lock.tryLock(cluster, holder);
  }

  readLock(cluster: string): Promise<LockHolder | undefined> {
    return this.lock.readLock(cluster);
  }

  renewLock(cluster: string, holder: LockHolder): Promise<boolean> {
    return this.lock.renewLock(cluster, holder);
  }

  removeLock(cluster: string, token: string | undefined): Promise<boolean> {
    return this.lock.removeLock(cluster, token);
  }

  /** Runs one S3 call and turns what it throws into a KburError that names `what` and what to fix. */
  async send<T>(what: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw this.toKburError(err, what);
    }
  }

  toKburError(err: unknown, what: string): KburError {
    if (KburError.is(err)) return err;
    const e = err as { name?: string; code?: string; $metadata?: { httpStatusCode?: number }; message?: string };
    const status = e.$metadata?.httpStatusCode;
    const detail = this.scrub(`${e.name && e.name !== 'Error' ? `${e.name}: ` : ''}${errorMessage(err)}`);
    const bucket = `bucket "${this.config.bucket}" on ${this.server}`;
    if (e.name === 'NoSuchBucket') {
      return new KburError('FAILED_PRECONDITION', `${what}: ${bucket} does not exist`, {
        hint: 'create the bucket, or fix repository.bucket (and repository.endpoint) in kbur.yaml',
      });
    }
    if (e.name === 'CredentialsProviderError') {
      return new KburError('FAILED_PRECONDITION', `${what}: no S3 credentials found (${detail})`, {
        hint: 'set repository.credentialsFile in kbur.yaml, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or an AWS profile or instance role',
      });
    }
    if (
      status === 403 ||
      ['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'ExpiredToken', 'InvalidToken'].includes(e.name ?? '')
    ) {
      return new KburError('PERMISSION_DENIED', `${what}: ${bucket} refused the credentials (${detail})`, {
        hint: 'check the keys in repository.credentialsFile (or the AWS credential chain) and that they may read and write the bucket',
      });
    }
    if (status === undefined || status >= 500 || e.name === 'TimeoutError') {
      return new KburError('UNAVAILABLE', `${what}: S3 endpoint ${this.server} unreachable or failing (${detail})`, {
        cause: err,
        hint: 'check repository.endpoint in kbur.yaml, that the S3 server runs, and the network to it',
      });
    }
    // No cause: a server's own message may quote a key; `detail` is that message with the keys redacted.
    return new KburError('FAILED_PRECONDITION', `${what}: ${bucket} answered ${status} (${detail})`);
  }

  /** Never let a key reach a message, whatever a server or the SDK put in its error. */
  private scrub(text: string): string {
    return this.secrets.reduce((t, s) => t.split(s).join('[redacted]'), text);
  }

  /** Aborts a multipart upload, retrying a little: until it succeeds the server keeps its parts. */
  async abortMultipart(key: string, uploadId: string): Promise<void> {
    let last: unknown;
    for (let attempt = 1; attempt <= ABORT_ATTEMPTS; attempt++) {
      try {
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.config.bucket, Key: key, UploadId: uploadId }));
        this.log.info('multipart upload aborted', { object: this.url(key), uploadId });
        return;
      } catch (err) {
        if ((err as { name?: string }).name === 'NoSuchUpload') return;
        last = err;
        if (attempt < ABORT_ATTEMPTS) await sleep(1000 * attempt);
      }
    }
    this.log.warn('multipart upload left on the S3 server: its parts stay until aborted', {
      object: this.url(key),
      uploadId,
      error: this.toKburError(last, 'AbortMultipartUpload').message,
      hint: 'a bucket lifecycle rule AbortIncompleteMultipartUpload removes such leftovers',
    });
  }

  /**
   * The calls that upload one object, as lib-storage makes them: with the SDK's default checksums
   * (requestChecksumCalculation WHEN_SUPPORTED) the multipart upload is created with CRC32, each
   * part carries its CRC32 and the completion lists them.
   */
  objectUpload(key: string): ObjectUpload {
    const Bucket = this.config.bucket;
    const Key = key;
    const checksums = this.client.config.requestChecksumCalculation().then((c) => c === 'WHEN_SUPPORTED');
    return {
      url: this.url(key),
      put: async (body) => {
        await this.client.send(new PutObjectCommand({ Bucket, Key, Body: body, ContentLength: body.length }));
      },
      create: async () => {
        const out = await this.client.send(
          new CreateMultipartUploadCommand({ Bucket, Key, ...((await checksums) ? { ChecksumAlgorithm: ChecksumAlgorithm.CRC32 } : {}) }),
        );
        if (!out.UploadId) throw new KburError('UNAVAILABLE', `CreateMultipartUpload of ${this.url(key)}: the server gave no upload id`);
        return out.UploadId;
      },
      part: async (UploadId, PartNumber, body) => {
        const out = await this.client.send(
          new UploadPartCommand({ Bucket, Key, UploadId, PartNumber, Body: body, ContentLength: body.length }),
        );
        if (!out.ETag) throw new KburError('UNAVAILABLE', `UploadPart ${PartNumber} of ${this.url(key)}: the server gave no ETag`);
        return {
          PartNumber,
          ETag: out.ETag,
          ...(out.ChecksumCRC32 && { ChecksumCRC32: out.ChecksumCRC32 }),
          ...(out.ChecksumCRC32C && { ChecksumCRC32C: out.ChecksumCRC32C }),
          ...(out.ChecksumCRC64NVME && { ChecksumCRC64NVME: out.ChecksumCRC64NVME }),
          ...(out.ChecksumSHA1 && { ChecksumSHA1: out.ChecksumSHA1 }),
          ...(out.ChecksumSHA256 && { ChecksumSHA256: out.ChecksumSHA256 }),
        };
      },
      complete: async (UploadId, Parts: CompletedPart[]) => {
        await this.client.send(new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts } }));
      },
      abort: (uploadId) => this.abortMultipart(key, uploadId),
      toKburError: (err, what) => this.toKburError(err, what),
    };
  }

  url(key: string): string {
    return `s3://${this.config.bucket}/${key}`;
  }

  /** The folder names (common prefixes) right under `prefix`. */
  private async listFolders(prefix: string): Promise<string[]> {
    const names: string[] = [];
    let token: string | undefined;
    do {
      const page: ListObjectsV2CommandOutput = await this.send(`cannot list ${this.url(prefix)}`, () =>
        this.client.send(
          new ListObjectsV2Command({ Bucket: this.config.bucket, Prefix: prefix, Delimiter: '/', ContinuationToken: token }),
        ),
      );
      for (const p of page.CommonPrefixes ?? []) if (p.Prefix) names.push(p.Prefix.slice(prefix.length, -1));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return names.sort();
  }

  /** Aborts the multipart uploads left under `prefix` (by a kbur killed mid-upload); skipped on servers that cannot list them. */
  private async abortUploadsUnder(prefix: string): Promise<void> {
    let uploads: { Key?: string; UploadId?: string }[];
    try {
      uploads = (await this.client.send(new ListMultipartUploadsCommand({ Bucket: this.config.bucket, Prefix: prefix }))).Uploads ?? [];
    } catch (err) {
      this.log.debug('multipart uploads not listed', {
        prefix: this.url(prefix),
        error: this.toKburError(err, 'ListMultipartUploads').message,
      });
      return;
    }
    for (const u of uploads) if (u.Key && u.UploadId) await this.abortMultipart(u.Key, u.UploadId);
  }

  /** The calls the lock makes (s3-lock.ts). */
  private lockObjects(): LockObjects {
    return {
      location: this.location,
      log: this.log,
      url: (key) => this.url(key),
      getText: (key) => this.getText(key),
      putText: (key, text) => this.putText(key, text),
      putIfAbsent: async (key, text) => {
        try {
          await this.client.send(new PutObjectCommand({ Bucket: this.config.bucket, Key: key, Body: text, IfNoneMatch: '*' }));
          return 'written';
        } catch (err) {
          const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
          // 412: the key exists; 409: another conditional write of it is in flight (AWS); 501: no conditional writes here.
          if (status === 412 || status === 409) return 'exists';
          if (status === 501) return 'unsupported';
          throw this.toKburError(err, `cannot write ${this.url(key)}`);
        }
      },
      remove: async (key, what) => {
        await this.send(what, () => this.client.send(new DeleteObjectCommand({ Bucket: this.config.bucket, Key: key })));
      },
      removeQuietly: async (key) => {
        await this.client.send(new DeleteObjectCommand({ Bucket: this.config.bucket, Key: key })).catch(() => undefined);
      },
    };
  }

  private backupPrefix(cluster: string, id: string): string {
    return `${this.base}${cluster}/backups/${checkId(id, 'backup', 'kbur list shows the ids')}/`;
  }

  private journalKey(cluster: string, restoreId: string): string {
    return `${this.base}${cluster}/restores/${checkId(restoreId, 'restore', 'the restore id is printed when a restore starts')}/journal.json`;
  }

  /** A path from a manifest, kept inside the backup's prefix whatever it says. */
  private inside(dir: string, relPath: string): string {
    const key = posix.normalize(`${dir}${relPath}`);
    if (!key.startsWith(dir) || key === dir || relPath.startsWith('/')) {
      throw new KburError('DATA_LOSS', `artifact path "${relPath}" leaves the backup folder`, {
        hint: 'the manifest was tampered with; do not restore from it',
      });
    }
    return key;
  }

  private putJson(key: string, value: unknown): Promise<void> {
    return this.putText(key, JSON.stringify(value, null, 2) + '\n');
  }

  private async putText(key: string, text: string): Promise<void> {
    await this.send(`cannot write ${this.url(key)}`, () =>
      this.client.send(new PutObjectCommand({ Bucket: this.config.bucket, Key: key, Body: text, ContentType: 'application/json' })),
    );
  }

  /** The object's body, or undefined when there is no such key. */
  private async getBody(key: string, what: string, signal?: AbortSignal): Promise<Readable | undefined> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.config.bucket, Key: key }), { abortSignal: signal });
      if (!(out.Body instanceof Readable)) throw new KburError('INTERNAL', `${what}: the S3 client gave no stream`);
      return out.Body;
    } catch (err) {
      if ((err as { name?: string }).name === 'NoSuchKey') return undefined;
      throw this.toKburError(err, `cannot read ${what}`);
    }
  }

  private async getText(key: string): Promise<string | undefined> {
    const body = await this.getBody(key, this.url(key));
    if (!body) return undefined;
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of body) {
        size += (chunk as Buffer).length;
        if (size > MAX_JSON_BYTES)
          throw new KburError('DATA_LOSS', `${this.url(key)} is larger than ${MAX_JSON_BYTES} bytes: not a kbur file`);
        chunks.push(chunk as Buffer);
      }
    } catch (err) {
      throw this.toKburError(err, `cannot read ${this.url(key)}`);
    } finally {
      body.destroy();
    }
    return Buffer.concat(chunks).toString('utf8');
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

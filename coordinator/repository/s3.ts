import { randomBytes } from 'node:crypto';
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
import { parseLockRecord, type LockHolder } from './lock.js';
import type { BackupListing, BackupWriter, Repository } from './repository.js';
import { readCredentialsFile } from './s3-credentials.js';
import { S3ArtifactWriter, type ObjectUpload } from './s3-writer.js';

/** Small JSON objects (manifest, verify.json, journal) are read whole; anything larger is not ours. */
const MAX_JSON_BYTES = 16 << 20;
const LIST_CONCURRENCY = 8;
/** AbortMultipartUpload attempts, each with the SDK's own retries, a second apart then two. */
const ABORT_ATTEMPTS = 3;
/** Lease-object locks (servers without conditional PUT): how long a taker waits before it rereads the record. */
const LEASE_SETTLE_MS = 2000;

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
  private conditional: Promise<boolean> | undefined;

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

  /**
   * The lock is the object <prefix>/<cluster>/kbur.lock. Where the server honours a conditional PUT
   * (If-None-Match: *: AWS S3, MinIO, recent Ceph RGW) it is created atomically: of two takers, the
   * server refuses one (412). Where it does not (it ignores the header and overwrites: fauxqs, the
   * sandbox's server), a lease object instead: the record is put only if none is there, then read
   * back after LEASE_SETTLE_MS; of takers racing within that window, the last writer holds it and
   * the others see its token and back off. Which one the server gave is logged (info).
   */
  async tryLock(cluster: string, holder: LockHolder): Promise<boolean> {
    const key = this.lockKey(cluster);
    const body = JSON.stringify(holder, null, 2) + '\n';
    if (await this.conditionalPuts(cluster)) {
      try {
        await this.client.send(new PutObjectCommand({ Bucket: this.config.bucket, Key: key, Body: body, IfNoneMatch: '*' }));
        return true;
      } catch (err) {
        if (isConditionFailure(err)) return false;
        throw this.toKburError(err, `cannot take the lock ${this.url(key)}`);
      }
    }
    if ((await this.getText(key)) !== undefined) return false;
    await this.putText(key, body);
    await sleep(LEASE_SETTLE_MS);
    const after = await this.getText(key);
    return after !== undefined && parseLockRecord(after, this.url(key)).token === holder.token;
  }

  async readLock(cluster: string): Promise<LockHolder | undefined> {
    const key = this.lockKey(cluster);
    const text = await this.getText(key);
    return text === undefined ? undefined : parseLockRecord(text, this.url(key));
  }

  async renewLock(cluster: string, holder: LockHolder): Promise<boolean> {
    const current = await this.readLock(cluster).catch(() => undefined);
    if (current?.token !== holder.token) return false;
    await this.putText(this.lockKey(cluster), JSON.stringify(holder, null, 2) + '\n');
    return true;
  }

  /** Reread, then deleted: of two removers racing on one lock both may report it removed (S3 has no rename). */
  async removeLock(cluster: string, token: string | undefined): Promise<boolean> {
    const key = this.lockKey(cluster);
    const text = await this.getText(key);
    if (text === undefined) return false;
    if (token !== undefined) {
      let held: string | undefined;
      try {
        held = parseLockRecord(text, this.url(key)).token;
      } catch {
        held = undefined;
      }
      if (held !== token) return false;
    }
    await this.send(`cannot remove the lock ${this.url(key)}`, () =>
      this.client.send(new DeleteObjectCommand({ Bucket: this.config.bucket, Key: key })),
    );
    return true;
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

  /** Whether the server refuses a second PUT If-None-Match: * of one key, asked once per process with a probe object. */
  private conditionalPuts(cluster: string): Promise<boolean> {
    this.conditional ??= (async () => {
      const key = `${this.base}${cluster}/kbur.lock-probe-${randomBytes(8).toString('hex')}`;
      const put = (): Promise<unknown> =>
        this.client.send(new PutObjectCommand({ Bucket: this.config.bucket, Key: key, Body: 'probe', IfNoneMatch: '*' }));
      try {
        await put();
        await put();
        return false;
      } catch (err) {
        if (isConditionFailure(err)) return true;
        if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 501) return false;
        throw this.toKburError(err, `cannot probe ${this.url(key)}`);
      } finally {
        await this.client.send(new DeleteObjectCommand({ Bucket: this.config.bucket, Key: key })).catch(() => undefined);
      }
    })().then((conditional) => {
      this.log.info(
        conditional ? 'S3 lock: conditional PUT (If-None-Match: *)' : 'S3 lock: lease object (the server ignores If-None-Match)',
        {
          location: this.location,
        },
      );
      return conditional;
    });
    return this.conditional;
  }

  private lockKey(cluster: string): string {
    return `${this.base}${cluster}/kbur.lock`;
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

/** 412: the key exists (If-None-Match: *); 409: another conditional write of it is in flight (AWS). */
function isConditionFailure(err: unknown): boolean {
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  return status === 412 || status === 409;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

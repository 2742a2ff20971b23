import { readFile } from 'node:fs/promises';
import { Duplex, PassThrough, Readable, Transform, Writable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { Encrypter, identityToRecipient } from 'age-encryption';
import { KburError, errorMessage } from '../../shared/errors.js';
import type { Artifact, Manifest } from '../../shared/manifest.js';
import { StreamDigest, type FileDigest } from '../../shared/streams.js';
import { AgeDecryptStream, ageEncryptStream, ageHeaderCheck } from './age-stream.js';
import type { ArtifactWriter, BackupWriter, Repository } from './repository.js';

/**
 * Sealing: compress, then encrypt (age) on write; decrypt, then decompress on read. Every sealed
 * artifact is a standard .zst/.gz inside a standard age file, so `age -d -i key.txt x.zst.age | zstd -d`
 * opens it without kbur. Nothing here holds an artifact whole: every step is a stream.
 */

export type Compression = 'none' | 'gzip' | 'zstd';
export interface SealSettings {
  compression: Compression;
  /** age recipients (age1...); none: no encryption. */
  recipients: string[];
}
export const NO_SEAL: SealSettings = { compression: 'none', recipients: [] };

const SUFFIX: Record<Compression, string> = { none: '', gzip: '.gz', zstd: '.zst' };
const CHUNK = 256 << 10;

/** The manifest fields that say how an artifact is stored. */
export type SealRecord = Pick<Artifact, 'path' | 'size' | 'sha256' | 'compression' | 'encryption' | 'recipients' | 'plaintext'>;

/** An artifact being written: plaintext goes into `stream`; after commit(), record() gives its manifest fields. */
export interface SealedArtifact extends ArtifactWriter {
  readonly path: string;
  /** `plain`: what was written into `stream`, as the caller counted it. */
  record(plain: FileDigest): SealRecord;
}

/**
 * Opens `relPath` of a backup for writing, sealed as `seal` says: the path gets `.zst`/`.gz` and
 * `.age`. A dump passes `agentCompression`, what its agent did (gzip, or none for formats that are
 * compressed already): kbur does not compress it again, and its agent decompresses it on restore.
 * Without compression and recipients the artifact is written as it comes.
 */
export async function createSealed(
  backup: BackupWriter,
  relPath: string,
  seal: SealSettings,
  agentCompression?: 'none' | 'gzip',
): Promise<SealedArtifact> {
  const kburCompresses = agentCompression === undefined && seal.compression !== 'none';
  const compression: Compression = agentCompression ?? seal.compression;
  const encrypt = seal.recipients.length > 0;
  const path = `${relPath}${kburCompresses ? SUFFIX[seal.compression] : ''}${encrypt ? '.age' : ''}`;
  const file = await backup.artifact(path);
  const base = { path, compression, encryption: encrypt ? ('age' as const) : ('none' as const) };
  if (!kburCompresses && !encrypt) {
    return {
      path,
      stream: file.stream,
      commit: () => file.commit(),
      abort: () => file.abort(),
      record: (plain) => ({ ...base, size: plain.size, sha256: plain.sha256 }),
    };
  }
  const stored = new DigestPass();
  const input = new PassThrough({ highWaterMark: CHUNK });
  let stages: Duplex[];
  try {
    stages = [
      ...(kburCompresses ? [compressor(seal.compression as 'gzip' | 'zstd')] : []),
      ...(encrypt ? [await ageEncryptStream(seal.recipients)] : []),
    ];
  } catch (err) {
    await file.abort();
    throw err;
  }
  const flowing = pipeline([input, ...stages, stored, file.stream]);
  flowing.catch(() => undefined); // reported by commit(); abort() discards it
  return {
    path,
    stream: input,
    async commit() {
      input.end();
      try {
        await flowing;
      } catch (err) {
        throw new KburError('INTERNAL', `cannot seal ${path}: ${errorMessage(err)}`, { cause: err });
      }
      await file.commit();
    },
    async abort() {
      input.destroy();
      await flowing.catch(() => undefined);
      await file.abort();
    },
    record: (plain) => ({
      ...base,
      ...stored.result(),
      ...(encrypt ? { recipients: seal.recipients } : {}),
      plaintext: { size: plain.size, sha256: plain.sha256 },
    }),
  };
}

/** Refuses, before a backup starts, a recipient age cannot encrypt to. */
export async function checkRecipients(recipients: string[]): Promise<void> {
  for (const r of recipients) {
    try {
      const e = new Encrypter();
      e.addRecipient(r);
      await e.encrypt(new Uint8Array(0));
    } catch (err) {
      throw new KburError('INVALID_CONFIG', `encryption.recipients: "${r}" is not an age recipient: ${errorMessage(err)}`, {
        hint: 'list public keys as age-keygen -y prints them (age1...)',
      });
    }
  }
}

/** One line for the operator: how this backup's artifacts are stored. */
export function sealNote(seal: SealSettings): string {
  const enc = seal.recipients.length ? `encrypted with age to ${seal.recipients.join(', ')}` : 'not encrypted';
  return `stored: snapshot and node archives ${seal.compression === 'none' ? 'uncompressed' : `${seal.compression}-compressed`}, every artifact ${enc}`;
}

// Node's own zstd (zlib, libzstd 1.5) rather than Debian's zstd as a pipe: on a 300 MiB file it
// took 1.5-1.9 CPU-s against the CLI's 1.4-1.5 (level 3), with no child process and no pipe copies.
function compressor(c: Exclude<Compression, 'none'>): Duplex {
  return c === 'zstd'
    ? zlib.createZstdCompress({ chunkSize: CHUNK, params: { [zlib.constants.ZSTD_c_compressionLevel]: 3 } })
    : zlib.createGzip({ level: 6, chunkSize: CHUNK });
}

function decompressor(c: Exclude<Compression, 'none'>): Duplex {
  return c === 'zstd' ? zlib.createZstdDecompress({ chunkSize: CHUNK }) : zlib.createGunzip({ chunkSize: CHUNK });
}

/** Dumps are compressed and decompressed by their agent; the snapshot and node archives by kbur. */
function kburCompressedIt(a: Artifact): boolean {
  return a.kind !== 'dump' && a.compression !== 'none';
}

/** Whether an artifact's bytes are not the agent's as they are: kbur compressed or encrypted them. */
export function isSealed(a: Artifact): boolean {
  return a.plaintext !== undefined;
}

/** What the agent sent and gets back: size and sha256 before kbur's compression and encryption. */
export function plainDigest(a: Artifact): FileDigest {
  return a.plaintext ?? { size: a.size, sha256: a.sha256 };
}

/** An age identity file (`age-keygen` format): its keys and the recipients they answer to. */
export interface AgeIdentity {
  file: string;
  keys: string[];
  recipients: string[];
}

/** --identity FILE, else $KBUR_AGE_IDENTITY (a file path), else none. */
export async function loadIdentity(flag: string | undefined): Promise<AgeIdentity | undefined> {
  const file = flag ?? (process.env.KBUR_AGE_IDENTITY || undefined);
  if (!file) return undefined;
  const from = flag ? '--identity' : 'KBUR_AGE_IDENTITY';
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new KburError('INVALID_ARGUMENT', `${from} ${file} cannot be read: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`, {
      cause: err,
      hint: 'give the age identity file (made by age-keygen) whose public key kbur.yaml lists in encryption.recipients',
    });
  }
  const lines = text.split('\n').map((l, i) => ({ key: l.trim(), line: i + 1 }));
  const keys: string[] = [];
  const recipients: string[] = [];
  for (const { key, line } of lines.filter((l) => l.key && !l.key.startsWith('#'))) {
    try {
      recipients.push(await identityToRecipient(key));
      keys.push(key);
    } catch {
      throw new KburError('INVALID_ARGUMENT', `${from} ${file}: line ${line} is not an age identity (AGE-SECRET-KEY-1...)`, {
        hint: 'an identity file holds AGE-SECRET-KEY-1... lines, as age-keygen writes them',
      });
    }
  }
  if (!keys.length) {
    throw new KburError('INVALID_ARGUMENT', `${from} ${file} holds no age identity (AGE-SECRET-KEY-1... line)`, {
      hint: 'give the file age-keygen wrote',
    });
  }
  return { file, keys, recipients };
}

/** Why `identity` cannot open `a` (missing, or not one of its recipients), or undefined when it can or need not. */
export function identityProblem(a: Artifact, identity: AgeIdentity | undefined): string | undefined {
  if (a.encryption !== 'age') return undefined;
  const to = (a.recipients ?? []).join(', ');
  if (!identity)
    return `${a.path} is encrypted with age (to ${to}): give --identity FILE or set KBUR_AGE_IDENTITY to the identity file of one of them`;
  if (!identity.recipients.some((r) => a.recipients?.includes(r)))
    return `the identity in ${identity.file} (${identity.recipients.join(', ')}) is not one of the recipients ${a.path} was encrypted to (${to})`;
  return undefined;
}

/**
 * The agent's bytes of an artifact, streamed: decrypted with `identity`, decompressed when kbur
 * compressed it. On the way, the stored bytes are checked against the manifest's size and sha256,
 * the plaintext against its own, and a snapshot's etcd integrity hash: the stream fails at its end
 * (DATA_LOSS) if any does not hold. Fails at once when the identity cannot open it.
 */
export async function openPlain(repository: Repository, m: Manifest, a: Artifact, identity: AgeIdentity | undefined): Promise<Readable> {
  const problem = identityProblem(a, identity);
  if (problem) throw new KburError('FAILED_PRECONDITION', problem, { hint: 'kbur describe ID shows how each artifact is stored' });
  const source = await repository.openArtifact(m.cluster, m.id, a.path);
  if (!isSealed(a)) {
    // Checked as it streams too: size, sha256 and, for a snapshot, etcd's own hash.
    const checked = new DigestPass({ want: a, what: a.path, snapshot: a.kind === 'etcd-snapshot' });
    pipeline(source, checked).catch(() => undefined); // surfaces through `checked`
    return checked;
  }
  const stored = new DigestPass({ want: a, what: `${a.path} (as stored)` });
  const plain = new DigestPass({ want: plainDigest(a), what: `${a.path} (decrypted)`, snapshot: a.kind === 'etcd-snapshot' });
  const front = pipeline(source, stored);
  front.catch(() => undefined); // surfaces through the decrypted stream
  let bytes: Readable = stored;
  if (a.encryption === 'age') {
    const d = new AgeDecryptStream(identity!.keys);
    pipeline(stored, d).catch(() => undefined); // surfaces through the decrypted stream
    try {
      // The header is read and its MAC checked first: a wrong identity fails now, not mid-stream.
      await d.header;
      bytes = d;
    } catch (err) {
      source.destroy();
      throw new KburError('FAILED_PRECONDITION', `cannot decrypt ${a.path} with the identity in ${identity!.file}: ${errorMessage(err)}`, {
        cause: err,
        hint: 'give the identity of one of the recipients kbur describe shows for it',
      });
    }
  }
  const out = new PassThrough({ highWaterMark: CHUNK });
  const kburCompressed = kburCompressedIt(a);
  pipeline([bytes, ...(kburCompressed ? [decompressor(a.compression as 'gzip' | 'zstd')] : []), plain, out]).catch(() => undefined);
  return out;
}

/**
 * Reads a sealed artifact whole and checks it as openPlain does; without an identity that opens
 * it, only the stored bytes. With `payload: false`, only the stored bytes and, when encrypted, that
 * the identity opens its header: no decryption nor decompression (for a reader that checks the
 * plaintext anyway before it acts on it). What was read, or why it does not hold.
 */
export async function readSealed(
  repository: Repository,
  m: Manifest,
  a: Artifact,
  identity: AgeIdentity | undefined,
  signal: AbortSignal,
  opts: { payload?: boolean } = {},
): Promise<{ stored?: FileDigest; plain?: FileDigest; problem?: string }> {
  try {
    const locked = a.encryption === 'age' && identityProblem(a, identity) !== undefined;
    if (locked || opts.payload === false) {
      const stored = new DigestPass({ want: a, what: `${a.path} (as stored)` });
      const sink =
        !locked && a.encryption === 'age'
          ? ageHeaderCheck(identity!.keys, `cannot decrypt ${a.path} with the identity in ${identity!.file}`)
          : discard();
      await pipeline(await repository.openArtifact(m.cluster, m.id, a.path), stored, sink, { signal });
      return { stored: stored.result() };
    }
    const plain = new DigestPass();
    await pipeline(await openPlain(repository, m, a, identity), plain, discard(), { signal });
    return { stored: { size: a.size, sha256: a.sha256 }, plain: plain.result() };
  } catch (err) {
    return { problem: errorMessage(err) };
  }
}

function discard(): Writable {
  return new Writable({ write: (_chunk, _enc, done) => done() });
}

/** Passes bytes through, hashing them; with `want`, fails at the end unless size and sha256 match (and, for a snapshot, etcd's hash). */
class DigestPass extends Transform {
  readonly digest = new StreamDigest();
  private sha: string | undefined;

  constructor(private readonly check: { want?: FileDigest; what?: string; snapshot?: boolean } = {}) {
    super({ highWaterMark: CHUNK });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.digest.update(chunk);
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    const { want, what, snapshot } = this.check;
    const integrity = snapshot ? this.digest.snapshotIntegrityError() : null;
    if (integrity) return done(integrity);
    if (!want) return done();
    const got = this.result();
    if (got.size !== want.size || got.sha256 !== want.sha256) {
      return done(
        new KburError(
          'DATA_LOSS',
          `${what}: ${got.size} bytes with sha256 ${got.sha256}, the manifest says ${want.size} bytes with sha256 ${want.sha256}`,
        ),
      );
    }
    done();
  }

  result(): FileDigest {
    this.sha ??= this.digest.sha256();
    return { size: this.digest.size, sha256: this.sha };
  }
}

import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { Transform, Writable, type TransformCallback } from 'node:stream';
import { Decrypter, Encrypter, type Recipient } from 'age-encryption';
import { KburError } from '../../shared/errors.js';

/**
 * age files (C2SP age v1) whose header (recipient stanzas, header MAC) is made and checked by the
 * `age-encryption` package, and whose payload STREAM runs on node:crypto's native
 * ChaCha20-Poly1305: for 256 MiB, 1.1-1.3 CPU-s to encrypt and 0.8-0.9 to decrypt, against the package's 2.7-2.9 and 3.0-3.3.
 */

/** Plaintext bytes per STREAM chunk, and a ciphertext chunk: the same plus its Poly1305 tag. */
export const AGE_CHUNK = 64 << 10;
const TAG = 16;
const NONCE = 16;
const VERSION_LINE = Buffer.from('age-encryption.org/v1\n');
const MAC_LINE = Buffer.from('\n--- ');
/** No kbur header comes near this (an X25519 stanza is ~120 bytes); a stream past it without a MAC line is not age. */
const MAX_HEADER = 1 << 20;

/**
 * A recipient that adds no stanza and only sees the file key the Encrypter made: the package's
 * public Recipient interface, so its other recipients wrap the very key the STREAM below uses.
 */
class FileKeyTap implements Recipient {
  fileKey: Uint8Array | undefined;
  wrapFileKey(fileKey: Uint8Array): [] {
    this.fileKey = fileKey;
    return [];
  }
}

/** A header made by the package for `recipients`, and the file key its stanzas wrap. */
export async function ageHeader(recipients: string[]): Promise<{ header: Buffer; fileKey: Buffer }> {
  const e = new Encrypter();
  for (const r of recipients) e.addRecipient(r);
  const tap = new FileKeyTap();
  e.addRecipient(tap);
  // An empty file is header, nonce, and one empty final chunk: its tag. The header is all we keep.
  const empty = Buffer.from(await e.encrypt(new Uint8Array(0)));
  const end = headerEnd(empty);
  if (!tap.fileKey || tap.fileKey.length !== 16 || end !== empty.length - NONCE - TAG) {
    throw new Error(
      'age-encryption no longer gives its Recipient the 16-byte file key or writes an empty file as header+nonce+tag: ' +
        'coordinator/repository/age-stream.ts must be adapted to this version of the package',
    );
  }
  return { header: empty.subarray(0, end), fileKey: Buffer.from(tap.fileKey) };
}

/** Where the header ends (after its `--- MAC` line), or -1 when `buf` does not hold all of it yet. */
function headerEnd(buf: Buffer): number {
  const mac = buf.indexOf(MAC_LINE);
  if (mac < 0) return -1;
  const nl = buf.indexOf(0x0a, mac + MAC_LINE.length);
  return nl < 0 ? -1 : nl + 1;
}

/** age's payload key: HKDF-SHA-256 of the file key, salted with the file's 16-byte nonce, info "payload". */
function payloadKey(fileKey: Uint8Array, nonce: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', fileKey, nonce, 'payload', 32));
}

/** STREAM's 12-byte nonce: an 11-byte big-endian chunk counter, then 1 for the last chunk. */
function chunkNonce(counter: number, last: boolean): Buffer {
  const n = Buffer.alloc(12);
  n.writeUIntBE(counter, 5, 6); // 2^48 chunks of 64 KiB is more than any artifact
  n[11] = last ? 1 : 0;
  return n;
}

/** Byte pieces queued in order, taken out by length without copying more than a piece's edge. */
class Pieces {
  private list: Buffer[] = [];
  length = 0;
  add(b: Buffer): void {
    if (b.length) this.list.push(b);
    this.length += b.length;
  }
  /** Up to `n` bytes from the front, as the pieces they lie in. */
  take(n: number): Buffer[] {
    const out: Buffer[] = [];
    while (n > 0 && this.list.length) {
      const head = this.list[0]!;
      if (head.length <= n) {
        out.push(head);
        this.list.shift();
        n -= head.length;
        this.length -= head.length;
      } else {
        out.push(head.subarray(0, n));
        this.list[0] = head.subarray(n);
        this.length -= n;
        n = 0;
      }
    }
    return out;
  }
}

/**
 * Encrypts a stream to `recipients` as an age file: header, nonce, then 64 KiB chunks. Memory is a
 * chunk and what is written into it, whatever the size.
 */
export async function ageEncryptStream(recipients: string[]): Promise<Transform> {
  const { header, fileKey } = await ageHeader(recipients);
  const nonce = randomBytes(NONCE);
  const key = payloadKey(fileKey, nonce);
  fileKey.fill(0);
  const pending = new Pieces();
  let counter = 0;
  const seal = (t: Transform, last: boolean): void => {
    const c = createCipheriv('chacha20-poly1305', key, chunkNonce(counter++, last), { authTagLength: TAG });
    // Pushed as the cipher gives them: joining them would allocate every byte twice, and peak RSS
    // follows what is allocated (V8 collects buffers only every ~64 MiB of them).
    for (const p of pending.take(AGE_CHUNK)) t.push(c.update(p));
    c.final();
    t.push(c.getAuthTag());
  };
  const t = new Transform({
    highWaterMark: AGE_CHUNK + TAG,
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      pending.add(chunk);
      // A chunk is sealed only once more follows: the last one carries the flag, and may be full.
      while (pending.length > AGE_CHUNK) seal(this, false);
      done();
    },
    flush(done: TransformCallback) {
      seal(this, true);
      key.fill(0);
      done();
    },
  });
  t.push(Buffer.concat([header, nonce]));
  return t;
}

/**
 * A Transform that decrypts an age file for `identities` (AGE-SECRET-KEY-1...): `header` settles
 * once the header is read and its MAC checked (rejects on a wrong identity, a tampered header, a
 * stream that is not age), before any plaintext. Each chunk is passed on only after its tag
 * checked; a truncated or extended stream fails at its end (last-chunk flag), as age does.
 */
export class AgeDecryptStream extends Transform {
  readonly header: Promise<void>;
  private settle!: { ok: () => void; fail: (e: Error) => void };
  private head: Buffer[] | undefined = [];
  private headLength = 0;
  private key: Buffer | undefined;
  private readonly pending = new Pieces();
  private counter = 0;

  constructor(private readonly identities: string[]) {
    super({ highWaterMark: AGE_CHUNK });
    this.header = new Promise((ok, fail) => (this.settle = { ok, fail }));
    this.header.catch(() => undefined); // the stream errors too; a caller need not await it
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (!this.head) return this.payload(chunk, done);
    this.head.push(chunk);
    this.headLength += chunk.length;
    const buf = this.head.length === 1 ? chunk : Buffer.concat(this.head);
    this.head = [buf];
    const prefix = buf.subarray(0, VERSION_LINE.length);
    if (!VERSION_LINE.subarray(0, prefix.length).equals(prefix))
      return this.fail(new Error('not an age file (no age-encryption.org/v1 line)'), done);
    const end = headerEnd(buf);
    if (end < 0 || buf.length < end + NONCE) {
      if (this.headLength > MAX_HEADER)
        return this.fail(new Error(`not an age file (no header MAC line in its first ${MAX_HEADER} bytes)`), done);
      return done();
    }
    this.head = undefined;
    const d = new Decrypter();
    for (const k of this.identities) d.addIdentity(k);
    d.decryptHeader(buf.subarray(0, end)).then(
      (fileKey) => {
        this.key = payloadKey(fileKey, buf.subarray(end, end + NONCE));
        fileKey.fill(0);
        this.settle.ok();
        this.payload(buf.subarray(end + NONCE), done);
      },
      (err: unknown) => this.fail(err instanceof Error ? err : new Error(String(err)), done),
    );
  }

  override _flush(done: TransformCallback): void {
    if (this.head) return this.fail(new Error('truncated age file: it ends inside its header'), done);
    try {
      if (this.pending.length < TAG) throw new Error('truncated age file: its last chunk is shorter than a tag');
      if (this.pending.length === TAG && this.counter > 0) throw new Error('invalid age file: an empty last chunk after others');
      this.open(true);
      this.key!.fill(0);
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  private payload(chunk: Buffer, done: TransformCallback): void {
    this.pending.add(chunk);
    try {
      // A full chunk is opened as not-last only once more bytes follow it; the final one waits for _flush.
      while (this.pending.length > AGE_CHUNK + TAG) this.open(false);
      done();
    } catch (err) {
      done(err as Error);
    }
  }

  private open(last: boolean): void {
    const d = createDecipheriv('chacha20-poly1305', this.key!, chunkNonce(this.counter++, last), { authTagLength: TAG });
    const sealed = this.pending.take(AGE_CHUNK + TAG);
    const tag = takeTail(sealed, TAG);
    d.setAuthTag(tag);
    const out = sealed.map((p) => d.update(p));
    try {
      out.push(d.final());
    } catch {
      throw new Error(`age payload chunk ${this.counter - 1} does not authenticate (tampered, truncated, or extended)`);
    }
    this.push(out.length === 1 ? out[0] : Buffer.concat(out));
  }

  override _destroy(err: Error | null, done: (err: Error | null) => void): void {
    // A source that fails or closes before the header was read must not leave `header` pending.
    this.settle.fail(err ?? new Error('the age stream closed before its header was read'));
    this.key?.fill(0);
    done(err);
  }

  private fail(err: Error, done: TransformCallback): void {
    this.head = undefined;
    this.settle.fail(err);
    done(err);
  }
}

/** Splits the last `n` bytes off a list of pieces (in place); those bytes. */
function takeTail(pieces: Buffer[], n: number): Buffer {
  const tail: Buffer[] = [];
  while (n > 0) {
    const last = pieces.pop()!;
    if (last.length <= n) {
      tail.unshift(last);
      n -= last.length;
    } else {
      tail.unshift(last.subarray(last.length - n));
      pieces.push(last.subarray(0, last.length - n));
      n = 0;
    }
  }
  return tail.length === 1 ? tail[0]! : Buffer.concat(tail);
}

/**
 * A sink that checks only an age file's header against `identities` (the file key unwraps, the MAC
 * holds) and discards the rest unread by any cipher: it fails at its end, with `what` and why, when the header does not open.
 */
export function ageHeaderCheck(identities: string[], what: string): Writable {
  const probe = new AgeDecryptStream(identities);
  probe.resume(); // at most the first payload bytes come out; they are dropped
  let settled = false;
  void probe.header.then(
    () => (settled = true),
    () => (settled = true),
  );
  probe.on('error', () => undefined); // reported through probe.header
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      if (!settled) probe.write(chunk);
      done();
    },
    final(done) {
      if (!settled) probe.end();
      probe.header.then(
        () => {
          probe.destroy();
          done();
        },
        (err: Error) => done(new KburError('FAILED_PRECONDITION', `${what}: ${err.message}`, { cause: err })),
      );
    },
    destroy(err, done) {
      probe.destroy();
      done(err);
    },
  });
}

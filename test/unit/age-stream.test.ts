import { execFile } from 'node:child_process';
import { createCipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { Decrypter, Encrypter } from 'age-encryption';
import { AGE_CHUNK, AgeDecryptStream, ageEncryptStream, ageHeader } from '../../coordinator/repository/age-stream.js';

const exec = promisify(execFile);
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Around every edge of age's 64 KiB STREAM chunks, and a few MiB. */
const SIZES = [0, 1, AGE_CHUNK - 1, AGE_CHUNK, AGE_CHUNK + 1, 2 * AGE_CHUNK, 3 * 1024 * 1024 + 17];

/** `data` written in uneven pieces (as gRPC messages come), never aligned to a chunk. */
function pieces(data: Buffer, size = 70_001): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) parts.push(data.subarray(i, i + size));
  return Readable.from(parts);
}

async function fastEncrypt(data: Buffer, recipients: string[], size?: number): Promise<Buffer> {
  return buffer(pieces(data, size).pipe(await ageEncryptStream(recipients)));
}

/** Decrypts with the fast path; rejects with the reason when the header or any chunk is refused. */
async function fastDecrypt(cipher: Buffer, keys: string[], size?: number): Promise<Buffer> {
  const d = new AgeDecryptStream(keys);
  const src = pieces(cipher, size);
  pipeline(src, d).catch(() => undefined); // surfaces through d.header or d
  await d.header;
  return buffer(d);
}

describe('age payload on node:crypto (byte-compatible with the age CLI and age-encryption)', function () {
  this.timeout(120_000);
  let dir: string;
  let key: string;
  let keyFile: string;
  let recipient: string;
  let other: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kbur-age-stream-'));
    keyFile = join(dir, 'key.txt');
    await exec('age-keygen', ['-o', keyFile]);
    await exec('age-keygen', ['-o', join(dir, 'other.txt')]);
    key = (await readFile(keyFile, 'utf8')).split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-1'))!;
    other = (await readFile(join(dir, 'other.txt'), 'utf8')).split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-1'))!;
    recipient = (await exec('age-keygen', ['-y', keyFile])).stdout.trim();
  });

  after(() => rm(dir, { recursive: true, force: true }));

  it('relies on age-encryption 0.3.x: a Recipient sees the file key, an empty file is header+nonce+tag', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.resolve('age-encryption')), 'utf8')) as { version: string };
    // Upgrading the package: rerun this file; ageHeader() and decryptHeader() are all age-stream.ts takes from it.
    expect(pkg.version, 'age-stream.ts was written against age-encryption 0.3.x').to.match(/^0\.3\./);
    expect(typeof new Decrypter().decryptHeader).to.equal('function');
    const { header, fileKey } = await ageHeader([recipient]);
    expect(fileKey.length).to.equal(16);
    expect(header.subarray(0, 22).toString()).to.equal('age-encryption.org/v1\n');
    expect(header.toString()).to.match(/\n-> X25519 \S+\n[\s\S]*\n--- \S{43}\n$/);
    expect(Buffer.from(await withKey(key).decryptHeader(header)).equals(fileKey)).to.equal(true);
  });

  for (const size of SIZES) {
    it(`${size} bytes: kbur -> age -d, age -r -> kbur, kbur <-> age-encryption`, async () => {
      const data = randomBytes(size);
      const plain = join(dir, `plain-${size}`);
      await writeFile(plain, data);

      const ours = await fastEncrypt(data, [recipient]);
      const chunks = Math.max(1, Math.ceil(size / AGE_CHUNK));
      expect(ours.length - size - 16 * chunks, 'header+nonce, then a 16-byte tag per chunk').to.be.within(150, 300);
      await writeFile(join(dir, 'ours.age'), ours);
      const cliOpened = (await exec('age', ['-d', '-i', keyFile, join(dir, 'ours.age')], { encoding: 'buffer', maxBuffer: 64 << 20 }))
        .stdout;
      expect(sha(cliOpened), 'age -d of kbur-encrypted').to.equal(sha(data));

      await exec('age', ['-r', recipient, '-o', join(dir, 'cli.age'), plain]);
      const cli = await readFile(join(dir, 'cli.age'));
      expect(sha(await fastDecrypt(cli, [other, key])), 'kbur of age -r').to.equal(sha(data));

      const lib = Buffer.from(await withKey(key).decrypt(ours));
      expect(sha(lib), 'age-encryption of kbur-encrypted').to.equal(sha(data));
      const e = new Encrypter();
      e.addRecipient(recipient);
      const libCipher = Buffer.from(await e.encrypt(data));
      expect(sha(await fastDecrypt(libCipher, [key], 65_552)), 'kbur of age-encryption').to.equal(sha(data));
    });
  }

  it('refuses a wrong identity and a tampered header before any plaintext', async () => {
    const ours = await fastEncrypt(randomBytes(1000), [recipient]);
    await expectRefused(ours, [other], /no identity matched/);
    const bad = Buffer.from(ours);
    bad[30] ^= 0x01; // inside the X25519 stanza
    await expectRefused(bad, [key], /./);
    const mac = Buffer.from(ours);
    const at = mac.indexOf('\n--- ') + 6; // a MAC character (of full 6 bits), changed for another valid one
    mac[at] = mac[at] === 0x41 ? 0x42 : 0x41;
    await expectRefused(mac, [key], /invalid header HMAC/);
    await expectRefused(Buffer.from('hello, not age at all\n'), [key], /not an age file/);
    await expectRefused(ours.subarray(0, 40), [key], /truncated age file: it ends inside its header/);
  });

  it('refuses a flipped payload byte, a cut at a chunk boundary, a dropped or an extra chunk', async () => {
    const data = randomBytes(3 * AGE_CHUNK + 5);
    const ours = await fastEncrypt(data, [recipient]);
    const payload = ours.length - (data.length + 4 * 16);
    const flipped = Buffer.from(ours);
    flipped[payload + 100] ^= 0x01;
    await expectRefused(flipped, [key], /chunk 0 does not authenticate/);
    // Cut right after a full chunk: the next-to-last chunk was sealed without the last-chunk flag.
    await expectRefused(ours.subarray(0, payload + 2 * (AGE_CHUNK + 16)), [key], /chunk 1 does not authenticate/);
    await expectRefused(ours.subarray(0, ours.length - 1), [key], /chunk 3 does not authenticate/);
    await expectRefused(ours.subarray(0, payload + 2 * (AGE_CHUNK + 16) + 7), [key], /truncated age file: its last chunk is shorter/);
    const dropped = Buffer.concat([ours.subarray(0, payload + AGE_CHUNK + 16), ours.subarray(payload + 2 * (AGE_CHUNK + 16))]);
    await expectRefused(dropped, [key], /chunk 1 does not authenticate/);
    // The final chunk followed by more: it is then opened as not-last, and fails.
    const extended = Buffer.concat([ours, ours.subarray(payload, payload + AGE_CHUNK + 16)]);
    await expectRefused(extended, [key], /chunk 3 does not authenticate/);
    // The age CLI refuses the same cut.
    await writeFile(join(dir, 'cut.age'), ours.subarray(0, payload + 2 * (AGE_CHUNK + 16)));
    const cli = await exec('age', ['-d', '-i', keyFile, join(dir, 'cut.age')], { encoding: 'buffer' }).catch((e: unknown) => e);
    expect(cli).to.be.instanceOf(Error);
  });

  it('refuses an empty last chunk after full ones (age writes a full last chunk instead), as the age CLI does', async () => {
    // Forged with the file key: chunk 0 full and not last, then a valid empty last chunk 1.
    const { header, fileKey } = await ageHeader([recipient]);
    const nonce = randomBytes(16);
    const k = Buffer.from(hkdfSync('sha256', fileKey, nonce, 'payload', 32));
    const chunk = (i: number, last: boolean, p: Buffer): Buffer => {
      const n = Buffer.alloc(12);
      n[10] = i;
      n[11] = last ? 1 : 0;
      const c = createCipheriv('chacha20-poly1305', k, n, { authTagLength: 16 });
      return Buffer.concat([c.update(p), c.final(), c.getAuthTag()]);
    };
    const forged = Buffer.concat([header, nonce, chunk(0, false, randomBytes(AGE_CHUNK)), chunk(1, true, Buffer.alloc(0))]);
    await expectRefused(forged, [key], /an empty last chunk after others/);
    await writeFile(join(dir, 'forged.age'), forged);
    expect(await exec('age', ['-d', '-i', keyFile, join(dir, 'forged.age')]).catch((e: unknown) => e)).to.be.instanceOf(Error);
    // The same bytes with chunk 1 holding one byte open fine: the forgery itself is sound.
    const sound = Buffer.concat([header, nonce, chunk(0, false, Buffer.alloc(AGE_CHUNK)), chunk(1, true, Buffer.from('x'))]);
    expect((await fastDecrypt(sound, [key])).length).to.equal(AGE_CHUNK + 1);
  });

  async function expectRefused(cipher: Buffer, keys: string[], why: RegExp): Promise<void> {
    const err = await fastDecrypt(cipher, keys).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err, `refused: ${String(why)}`).to.be.instanceOf(Error);
    expect((err as Error).message).to.match(why);
  }
});

/** A Decrypter holding `key`, to call its methods on. */
function withKey(key: string): Decrypter {
  const d = new Decrypter();
  d.addIdentity(key);
  return d;
}

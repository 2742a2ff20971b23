import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { KburError } from '../../shared/errors.js';
import type { Artifact, Manifest } from '../../shared/manifest.js';
import { LocalRepository } from '../../coordinator/repository/local.js';
import {
  createSealed,
  identityProblem,
  loadIdentity,
  openPlain,
  readSealed,
  type AgeIdentity,
  type SealSettings,
} from '../../coordinator/repository/seal.js';
import { fakeSnapshot } from './streams.test.js';

const exec = promisify(execFile);
const ID = '20261130T120000Z-0001';

/** Runs a tool with `input` on stdin; its stdout. */
function pipeThrough(cmd: string, args: string[], input: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { encoding: 'buffer', maxBuffer: 64 << 20 }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
    child.stdin!.end(input);
  });
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('sealed artifacts (compression, then age encryption)', function () {
  this.timeout(30_000);
  let dir: string;
  let repo: LocalRepository;
  let identity: AgeIdentity;
  let recipient: string;
  let otherIdentity: AgeIdentity;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kbur-seal-'));
    repo = new LocalRepository(join(dir, 'repo'));
    for (const name of ['key.txt', 'other.txt']) await exec('age-keygen', ['-o', join(dir, name)]);
    identity = (await loadIdentity(join(dir, 'key.txt')))!;
    otherIdentity = (await loadIdentity(join(dir, 'other.txt')))!;
    recipient = (await exec('age-keygen', ['-y', join(dir, 'key.txt')])).stdout.trim();
    expect(identity.recipients).to.deep.equal([recipient]);
  });

  after(() => rm(dir, { recursive: true, force: true }));

  /** Writes `data` as one artifact of a fresh backup, sealed as `seal` says; its manifest. */
  async function write(
    data: Buffer,
    kind: Artifact['kind'],
    seal: SealSettings,
    id = ID,
    agentCompression?: 'none' | 'gzip',
  ): Promise<Manifest> {
    const backup = await repo.createBackup('c', id);
    const sealed = await createSealed(
      backup,
      kind === 'etcd-snapshot' ? 'etcd/snapshot.db' : 'nodes/n1/kubernetes.tar',
      seal,
      agentCompression,
    );
    for (let i = 0; i < data.length; i += 70_000) sealed.stream.write(data.subarray(i, i + 70_000));
    await sealed.commit();
    const artifact: Artifact = { kind, node: 'n1', ...sealed.record({ size: data.length, sha256: sha(data) }) };
    return { cluster: 'c', id, artifacts: [artifact] } as unknown as Manifest;
  }

  it('writes etcd/snapshot.db.zst.age that the age CLI and zstd open without kbur', async () => {
    const snap = fakeSnapshot(3000);
    const m = await write(snap, 'etcd-snapshot', { compression: 'zstd', recipients: [recipient] });
    const a = m.artifacts[0]!;
    expect([a.path, a.compression, a.encryption, a.recipients]).to.deep.equal(['etcd/snapshot.db.zst.age', 'zstd', 'age', [recipient]]);
    expect(a.plaintext).to.deep.equal({ size: snap.length, sha256: sha(snap) });
    const file = repo.artifactLocation('c', ID, a.path);
    const stored = await readFile(file);
    expect([stored.length, sha(stored)]).to.deep.equal([a.size, a.sha256]);
    const decrypted = (await exec('age', ['-d', '-i', join(dir, 'key.txt'), file], { encoding: 'buffer', maxBuffer: 64 << 20 })).stdout;
    expect(sha(await pipeThrough('zstd', ['-d', '-c'], decrypted))).to.equal(sha(snap));
  });

  it('opens what the age CLI encrypted, and gives back the plaintext with every hash checked', async () => {
    const data = randomBytes(300_000);
    const m = await write(data, 'kubernetes-dir', { compression: 'none', recipients: [recipient] }, '20261130T120000Z-0002');
    const a = m.artifacts[0]!;
    const file = repo.artifactLocation('c', m.id, a.path);
    // Replace kbur's ciphertext with the CLI's for the same plaintext.
    await writeFile(join(dir, 'plain'), data);
    await exec('age', ['-r', recipient, '-o', file, join(dir, 'plain')]);
    const cli = await readFile(file);
    Object.assign(a, { size: cli.length, sha256: sha(cli) });
    expect(sha(await buffer(await openPlain(repo, m, a, identity)))).to.equal(sha(data));
  });

  it('gzip then age for a node archive; nothing sealed when neither is asked for', async () => {
    const data = Buffer.from('kubeadm '.repeat(50_000));
    const m = await write(data, 'kubernetes-dir', { compression: 'gzip', recipients: [recipient] }, '20261130T120000Z-0003');
    expect(m.artifacts[0]!.path).to.equal('nodes/n1/kubernetes.tar.gz.age');
    expect(m.artifacts[0]!.size).to.be.below(data.length / 10);
    expect((await buffer(await openPlain(repo, m, m.artifacts[0]!, identity))).equals(data)).to.equal(true);

    const plain = await write(data, 'kubernetes-dir', { compression: 'none', recipients: [] }, '20261130T120000Z-0004');
    const a = plain.artifacts[0]!;
    expect([a.path, a.compression, a.encryption, a.plaintext, a.size]).to.deep.equal([
      'nodes/n1/kubernetes.tar',
      'none',
      'none',
      undefined,
      data.length,
    ]);
  });

  it('never compresses a dump again: its agent did, and undoes it', async () => {
    const backup = await repo.createBackup('c', '20261130T120000Z-0005');
    const sealed = await createSealed(backup, 'dumps/n1/db/db.sql.gz', { compression: 'zstd', recipients: [recipient] }, 'gzip');
    sealed.stream.end(Buffer.from('gzip bytes'));
    await sealed.commit();
    const r = sealed.record({ size: 10, sha256: sha(Buffer.from('gzip bytes')) });
    expect([r.path, r.compression]).to.deep.equal(['dumps/n1/db/db.sql.gz.age', 'gzip']);
  });

  it('refuses a missing or wrong identity before reading a byte, naming the recipients', async () => {
    const m = await write(
      Buffer.from('x'.repeat(1000)),
      'kubernetes-dir',
      { compression: 'none', recipients: [recipient] },
      '20261130T120000Z-0006',
    );
    const a = m.artifacts[0]!;
    expect(identityProblem(a, undefined)).to.match(/is encrypted with age \(to age1.*\): give --identity FILE or set KBUR_AGE_IDENTITY/);
    expect(identityProblem(a, otherIdentity)).to.contain(
      `is not one of the recipients nodes/n1/kubernetes.tar.age was encrypted to (${recipient})`,
    );
    const err = await openPlain(repo, m, a, otherIdentity).catch((e: unknown) => e);
    expect(KburError.hasCode(err, 'FAILED_PRECONDITION')).to.equal(true);
    // A manifest that lies about its recipients: age itself refuses the header.
    const lying = { ...a, recipients: otherIdentity.recipients };
    const err2 = await openPlain(repo, m, lying, otherIdentity).catch((e: unknown) => e);
    expect((err2 as Error).message).to.match(/cannot decrypt nodes\/n1\/kubernetes.tar.age with the identity in .*other.txt/);
  });

  it('checks the stored bytes without an identity, and finds one flipped byte either way', async () => {
    const snap = fakeSnapshot(200);
    const m = await write(snap, 'etcd-snapshot', { compression: 'zstd', recipients: [recipient] }, '20261130T120000Z-0007');
    const a = m.artifacts[0]!;
    const never = new AbortController().signal;
    expect(await readSealed(repo, m, a, undefined, never)).to.deep.equal({ stored: { size: a.size, sha256: a.sha256 } });
    expect((await readSealed(repo, m, a, identity, never)).plain).to.deep.equal(a.plaintext);
    const file = repo.artifactLocation('c', m.id, a.path);
    const bytes = await readFile(file);
    bytes[bytes.length - 100] ^= 0xff;
    await writeFile(file, bytes);
    expect((await readSealed(repo, m, a, undefined, never)).problem).to.match(/\(as stored\)|sha256/);
    expect((await readSealed(repo, m, a, identity, never)).problem).to.be.a('string');
  });

  it('payload: false checks the stored bytes and that the identity opens the age header, without decrypting', async () => {
    const m = await write(
      randomBytes(200_000),
      'kubernetes-dir',
      { compression: 'zstd', recipients: [recipient] },
      '20261130T120000Z-0008',
    );
    const a = m.artifacts[0]!;
    const never = new AbortController().signal;
    expect(await readSealed(repo, m, a, identity, never, { payload: false })).to.deep.equal({ stored: { size: a.size, sha256: a.sha256 } });
    // A payload byte flipped, the stored hashes fixed up: only decrypting would find it.
    const file = repo.artifactLocation('c', m.id, a.path);
    const bytes = await readFile(file);
    bytes[bytes.length - 100] ^= 0xff;
    await writeFile(file, bytes);
    const fixed = { ...a, sha256: sha(bytes) };
    expect((await readSealed(repo, m, fixed, identity, never, { payload: false })).problem).to.equal(undefined);
    expect((await readSealed(repo, m, fixed, identity, never)).problem).to.match(/chunk \d+ does not authenticate/);
    const lying = { ...fixed, recipients: otherIdentity.recipients };
    expect((await readSealed(repo, m, lying, otherIdentity, never, { payload: false })).problem).to.match(
      /cannot decrypt nodes\/n1\/kubernetes.tar.zst.age with the identity in .*other.txt: no identity matched/,
    );
    await writeFile(file, Buffer.from('not age at all, but hashed right'));
    const notAge = { ...a, size: 32, sha256: sha(Buffer.from('not age at all, but hashed right')) };
    expect((await readSealed(repo, m, notAge, identity, never, { payload: false })).problem).to.match(/not an age file/);
  });

  it('refuses an identity file that holds no identity, naming the file', async () => {
    await writeFile(join(dir, 'bad.txt'), '# nothing here\nage1notanidentity\n');
    const err = await loadIdentity(join(dir, 'bad.txt')).catch((e: unknown) => e);
    expect(KburError.hasCode(err, 'INVALID_ARGUMENT')).to.equal(true);
    expect((err as Error).message).to.match(/--identity .*bad.txt: line 2 is not an age identity/);
    const missing = await loadIdentity(join(dir, 'nope.txt')).catch((e: unknown) => e);
    expect((missing as Error).message).to.match(/--identity .*nope.txt cannot be read: ENOENT/);
  });
});

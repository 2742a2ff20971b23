import { mkdtemp, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { KburError } from '../../shared/errors.js';
import { MANIFEST_SCHEMA_VERSION, type Manifest } from '../../shared/manifest.js';
import { LocalRepository } from '../../coordinator/repository/local.js';
import { generateSigningKey, loadSigningKeys, signedRepository, SIGNATURE_FILE } from '../../coordinator/repository/signing.js';

function manifest(id: string): Manifest {
  return {
    schemaVersion: MANIFEST_SCHEMA_VERSION,
    kburVersion: 'test',
    cluster: 'c',
    id,
    startedAt: '2026-11-30T12:00:00Z',
    finishedAt: '2026-11-30T12:00:01Z',
    phase: 'Completed',
    failures: [],
    etcd: null,
    artifacts: [
      {
        kind: 'kubernetes-dir',
        node: 'n1',
        path: 'nodes/n1/kubernetes.tar',
        size: 3,
        sha256: 'a'.repeat(64),
        compression: 'none',
        encryption: 'none',
      },
    ],
  };
}

describe('signed manifests', () => {
  let dir: string;
  let local: LocalRepository;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kbur-signing-'));
    local = new LocalRepository(join(dir, 'repo'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  async function backup(repo: ReturnType<typeof signedRepository>, id: string): Promise<string> {
    const w = await repo.createBackup('c', id);
    await w.writeManifest(manifest(id));
    return join(w.location, 'manifest.json');
  }

  it('kbur key generate writes a 0600 key and its .pub, and never overwrites either', async () => {
    const file = join(dir, 'sign.key');
    const { keyId, publicFile } = await generateSigningKey(file);
    expect(keyId).to.match(/^SHA256:[A-Za-z0-9+/]{43}$/);
    expect((await stat(file)).mode & 0o777).to.equal(0o600);
    expect(await readFile(publicFile, 'utf8')).to.contain('BEGIN PUBLIC KEY');
    const again = await generateSigningKey(file).catch((e: unknown) => e);
    expect(KburError.hasCode(again, 'FAILED_PRECONDITION')).to.equal(true);
    expect((again as Error).message).to.contain('already exists; kbur never overwrites a key');
  });

  it('signs each manifest beside it, and reads it back checked, also on a host that has only the public key', async () => {
    const keys = await loadSigningKeys({ key: join(dir, 'sign.key') });
    const repo = signedRepository(local, keys);
    await backup(repo, '20261130T120000Z-0011');
    const sig = JSON.parse(await readFile(join(dir, 'repo/c/backups/20261130T120000Z-0011', SIGNATURE_FILE), 'utf8')) as { keyId: string };
    expect(sig.keyId).to.equal(keys.keyId);
    expect((await repo.readManifest('c', '20261130T120000Z-0011')).id).to.equal('20261130T120000Z-0011');
    const readOnly = signedRepository(local, await loadSigningKeys({ publicKey: join(dir, 'sign.key.pub') }));
    expect((await readOnly.readManifest('c', '20261130T120000Z-0011')).phase).to.equal('Completed');
    const cannot = await readOnly.createBackup('c', '20261130T120000Z-0012').catch((e: unknown) => e);
    expect((cannot as Error).message).to.contain('signing.publicKey but no signing.key');
    // Without signing configured, the same set reads as before: the .sig beside it is ignored.
    expect((await local.readManifest('c', '20261130T120000Z-0011')).id).to.equal('20261130T120000Z-0011');
  });

  it('refuses a manifest changed after signing, an unsigned one and one signed by another key, naming the key', async () => {
    const keys = await loadSigningKeys({ key: join(dir, 'sign.key') });
    const repo = signedRepository(local, keys);
    const file = await backup(repo, '20261130T120000Z-0013');
    const m = JSON.parse(await readFile(file, 'utf8')) as Manifest;
    m.artifacts[0]!.sha256 = 'b'.repeat(64);
    await writeFile(file, JSON.stringify(m, null, 2));
    const changed = await repo.readManifest('c', '20261130T120000Z-0013').catch((e: unknown) => e);
    expect(KburError.hasCode(changed, 'DATA_LOSS')).to.equal(true);
    expect((changed as Error).message).to.contain('does not match its signature');
    expect((changed as Error).message).to.contain(keys.keyId);

    await unlink(join(dir, 'repo/c/backups/20261130T120000Z-0013', SIGNATURE_FILE));
    const unsigned = await repo.readManifest('c', '20261130T120000Z-0013').catch((e: unknown) => e);
    expect((unsigned as Error).message).to.match(/its manifest is not signed \(no manifest.json.sig\); signing is set \(key SHA256:/);

    await generateSigningKey(join(dir, 'other.key'));
    const other = signedRepository(local, await loadSigningKeys({ key: join(dir, 'other.key') }));
    await backup(other, '20261130T120000Z-0014');
    const foreign = await repo.readManifest('c', '20261130T120000Z-0014').catch((e: unknown) => e);
    expect((foreign as Error).message).to.contain('signed by another key');
  });

  it('refuses a signing key that is not Ed25519, naming the field', async () => {
    await writeFile(join(dir, 'junk.key'), 'not a key');
    const err = await loadSigningKeys({ key: join(dir, 'junk.key') }).catch((e: unknown) => e);
    expect(KburError.hasCode(err, 'INVALID_CONFIG')).to.equal(true);
    expect((err as Error).message).to.match(/signing.key .*junk.key is not a usable Ed25519 key/);
  });
});

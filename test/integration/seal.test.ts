import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { parse, stringify } from 'yaml';
import type { Manifest } from '../../shared/manifest.js';
import { createSandbox, waitForEtcdHealthy, type Sandbox } from '../sandbox/cluster.js';
import { runKbur } from '../helpers/kbur.js';

const exec = promisify(execFile);
const ETCDCTL_ENV = { PATH: process.env.PATH, ETCDCTL_API: '3' };

async function sha256(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
}

const ARTIFACT_FIELDS = ['kind', 'node', 'path', 'size', 'sha256', 'compression', 'encryption', 'recipients', 'plaintext'];

/** manifest.json as written holds the documented fields of each artifact, nothing that came along with them. */
async function expectOnlyManifestFields(dir: string): Promise<void> {
  const raw = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { artifacts: Record<string, unknown>[] };
  for (const a of raw.artifacts) {
    expect(
      Object.keys(a).filter((k) => !['kubeadmConfigFiles', 'fileCount', 'dump', ...ARTIFACT_FIELDS].includes(k)),
      String(a.path),
    ).to.deep.equal([]);
    if (a.plaintext) expect(Object.keys(a.plaintext).sort()).to.deep.equal(['sha256', 'size']);
  }
}

/** `cmd args < input > output`, with exit code and stderr checked. */
function shellFree(cmd: string, args: string[], input: string, output: string): Promise<void> {
  return exec('sh', ['-c', `"$0" "$@" < "${input}" > "${output}"`, cmd, ...args]).then(() => undefined);
}

describe('encrypted, compressed and signed backup sets on a 3-member TLS etcd', function () {
  this.timeout(300_000);
  let root: string;
  let sandbox: Sandbox;
  /** kbur.yaml variants beside the sandbox's own (relative paths in it stay right). */
  let sealedConfig: string;
  let signedConfig: string;
  const key = (): string => join(root, 'age-key.txt');
  const otherKey = (): string => join(root, 'other-key.txt');
  const kbur = (config: string, ...args: string[]) => runKbur(['--config', config, ...args]);
  const keys = async (): Promise<string[]> =>
    (await sandbox.etcdctl(['get', '--prefix', '/registry/', '--keys-only'])).split('\n').filter(Boolean).sort();
  const backupDir = (id: string): string => join(sandbox.repoDir, 'sandbox', 'backups', id);

  async function backup(config: string): Promise<Manifest> {
    const run = await kbur(config, 'backup', '--json');
    expect(run.code, run.stderr).to.equal(0);
    return JSON.parse(run.stdout) as Manifest;
  }

  /** Everything a restore could touch on the nodes. */
  async function fingerprint(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const node of sandbox.nodes) {
      out[`${node.name} node dir`] = (await readdir(node.dir)).sort().join(',');
      out[`${node.name} etcd pid`] = String(sandbox.kubelet.pid(node.name, 'etcd'));
      out[`${node.name} state dir`] = (await readdir(node.stateDir, { recursive: true })).sort().join(',');
      for (const dir of [node.manifestsDir, node.dataDir, node.kubernetesDir]) {
        for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
          const p = join(e.parentPath, e.name);
          out[relative(root, p)] = e.isFile() ? await sha256(p) : `inode ${(await stat(p)).ino}`;
        }
      }
    }
    return out;
  }

  before(async function () {
    root = await mkdtemp(join(tmpdir(), 'kbur-seal-test-'));
    sandbox = await createSandbox({ root });
    const node1 = sandbox.nodes[0]!;
    await writeFile(join(root, 'blob.bin'), randomBytes(1 << 20));
    const blob = `  blob: {type: command, dump: [/bin/cat, ${join(root, 'blob.bin')}], restore: [/bin/sh, -c, 'cat > ${join(root, 'restored.bin')}']}`;
    await writeFile(node1.agentConfig, `${await readFile(node1.agentConfig, 'utf8')}dumps:\n${blob}\n`);
    await sandbox.startAgents();
    await exec('age-keygen', ['-o', key()]);
    await exec('age-keygen', ['-o', otherKey()]);
    const recipient = (await exec('age-keygen', ['-y', key()])).stdout.trim();
    const made = await runKbur(['key', 'generate', join(root, 'signing.key')]);
    expect(made.code, made.stderr).to.equal(0);
    const base = parse(await readFile(sandbox.coordinatorConfig, 'utf8')) as Record<string, unknown>;
    sealedConfig = join(root, 'kbur-sealed.yaml');
    signedConfig = join(root, 'kbur-signed.yaml');
    await writeFile(sealedConfig, stringify({ ...base, compression: 'zstd', encryption: { recipients: [recipient] } }), { mode: 0o600 });
    await writeFile(signedConfig, stringify({ ...base, signing: { key: 'signing.key' } }), { mode: 0o600 });
  });

  after(async function () {
    await sandbox?.stop();
    await rm(root, { recursive: true, force: true });
  });

  it('writes an encrypted, zstd-compressed set that age -d and zstd -d open, and etcdctl snapshot status reads', async function () {
    const m = await backup(sealedConfig);
    const snapshot = m.artifacts.find((a) => a.kind === 'etcd-snapshot')!;
    expect([snapshot.path, snapshot.compression, snapshot.encryption]).to.deep.equal(['etcd/snapshot.db.zst.age', 'zstd', 'age']);
    expect(m.artifacts.filter((a) => a.kind === 'kubernetes-dir').map((a) => a.path)).to.include('nodes/node-1/kubernetes.tar.zst.age');
    expect(snapshot.recipients).to.have.length(1);
    expect(JSON.stringify(m)).to.not.contain('AGE-SECRET-KEY');

    const dir = backupDir(m.id);
    await expectOnlyManifestFields(dir);
    await shellFree('age', ['-d', '-i', key()], join(dir, snapshot.path), join(root, 'snap.zst'));
    await shellFree('zstd', ['-d', '-c'], join(root, 'snap.zst'), join(root, 'snap.db'));
    expect(await sha256(join(root, 'snap.db'))).to.equal(snapshot.plaintext!.sha256);
    const status = await exec('etcdctl', ['snapshot', 'status', join(root, 'snap.db'), '-w', 'json'], { env: ETCDCTL_ENV });
    expect((JSON.parse(status.stdout) as { revision: number }).revision).to.equal(m.etcd!.revision);

    await shellFree('age', ['-d', '-i', key()], join(dir, 'nodes/node-1/kubernetes.tar.zst.age'), join(root, 'k.zst'));
    await shellFree('zstd', ['-d', '-c'], join(root, 'k.zst'), join(root, 'k.tar'));
    expect((await exec('tar', ['-tf', join(root, 'k.tar')])).stdout).to.match(/admin\.conf/);
  });

  it('verify checks the encrypted bytes without an identity, and with one also the plaintext and etcd hash', async function () {
    const m = await backup(sealedConfig);
    const without = await kbur(sealedConfig, 'verify', m.id);
    expect(without.code, without.stdout + without.stderr).to.equal(0);
    expect(without.stdout).to.match(/checked as stored only/);
    expect(without.stdout).to.match(/unsigned/);

    const withIdentity = await runKbur(['--config', sealedConfig, 'verify', m.id], { KBUR_AGE_IDENTITY: key() });
    expect(withIdentity.code, withIdentity.stdout + withIdentity.stderr).to.equal(0);
    expect(withIdentity.stdout).to.match(/ok +etcd\/snapshot\.db\.zst\.age \(and its plaintext, decrypted\)/);
    const recorded = JSON.parse(await readFile(join(backupDir(m.id), 'verify.json'), 'utf8')) as {
      artifacts: { path: string; plaintext?: { sha256: string } }[];
    };
    const snapshot = m.artifacts.find((a) => a.kind === 'etcd-snapshot')!;
    expect(recorded.artifacts.find((a) => a.path === snapshot.path)?.plaintext?.sha256).to.equal(snapshot.plaintext!.sha256);
  });

  it('refuses a restore with a wrong or missing identity at preflight, touching no node', async function () {
    const m = await backup(sealedConfig);
    const before = await fingerprint();
    const wrong = await kbur(sealedConfig, 'restore', m.id, '--yes', '--identity', otherKey());
    expect(wrong.code, wrong.stdout + wrong.stderr).to.equal(9);
    expect(wrong.stderr).to.match(/nothing was changed/);
    expect(wrong.stderr).to.match(
      /the identity in .*other-key\.txt \(age1\w+\) is not one of the recipients etcd\/snapshot\.db\.zst\.age was encrypted to/,
    );
    const missing = await runKbur(['--config', sealedConfig, 'restore', m.id, '--yes'], { KBUR_AGE_IDENTITY: '' });
    expect(missing.code).to.equal(9);
    expect(missing.stderr).to.match(/is encrypted with age .*give --identity FILE or set KBUR_AGE_IDENTITY/);
    expect(await fingerprint()).to.deep.equal(before);
  });

  it('restores an encrypted, compressed set (and the node archives in it) and brings the data back', async function () {
    const wanted = await keys();
    const m = await backup(sealedConfig);
    await sandbox.etcdctl(['del', '--prefix', '/registry/configmaps/demo/']);
    const adminConf = join(sandbox.nodes[0]!.kubernetesDir, 'admin.conf');
    const original = await readFile(adminConf, 'utf8');
    await writeFile(adminConf, 'rewritten\n');
    const run = await kbur(sealedConfig, 'restore', m.id, '--yes', '--with-kubernetes-dir', '--identity', key());
    expect(run.code, run.stdout + run.stderr).to.equal(0);
    expect(run.stdout).to.match(/note: unsigned/);
    await waitForEtcdHealthy(sandbox);
    expect(await keys()).to.deep.equal(wanted);
    expect(await readFile(adminConf, 'utf8')).to.equal(original);
  });

  it('decrypts the snapshot once: preflight checks its stored bytes and age header, staging its plaintext before anything stops', async function () {
    const m = await backup(sealedConfig);
    const dir = backupDir(m.id);
    // The stored bytes are whole, but the manifest's plaintext sha256 is not theirs: only decrypting finds it.
    const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest;
    const entry = manifest.artifacts.find((a) => a.kind === 'etcd-snapshot')!;
    entry.plaintext = { ...entry.plaintext!, sha256: 'f'.repeat(64) };
    await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
    const dry = await kbur(sealedConfig, 'restore', m.id, '--dry-run', '--identity', key());
    expect(dry.code, dry.stdout + dry.stderr).to.equal(9);
    expect(dry.stderr).to.match(/snapshot etcd\/snapshot\.db\.zst\.age: .*\(decrypted\).*the manifest says \d+ bytes with sha256 f{64}/);

    const untouched = async (): Promise<Record<string, string>> =>
      Object.fromEntries(Object.entries(await fingerprint()).filter(([k]) => !k.endsWith('state dir') && !k.includes('/state')));
    const before = await untouched();
    const run = await kbur(sealedConfig, 'restore', m.id, '--yes', '--identity', key());
    expect(run.code, run.stdout + run.stderr).to.equal(5);
    expect(run.stdout).to.match(
      /^stage node-1: FAILED: etcd\/snapshot\.db\.zst\.age \(decrypted\): .*the manifest says \d+ bytes with sha256 f{64}/m,
    );
    expect(run.stdout).to.not.match(/^stop /m);
    expect(await untouched()).to.deep.equal(before);

    // A manifest that names the wrong recipient is refused by the header check, before any agent is asked.
    const other = (await exec('age-keygen', ['-y', otherKey()])).stdout.trim();
    entry.plaintext = m.artifacts.find((a) => a.kind === 'etcd-snapshot')!.plaintext;
    entry.recipients = [other];
    await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
    const lying = await kbur(sealedConfig, 'restore', m.id, '--yes', '--identity', otherKey());
    expect(lying.code, lying.stdout + lying.stderr).to.equal(9);
    expect(lying.stderr).to.match(/cannot decrypt etcd\/snapshot\.db\.zst\.age with the identity in .*other-key\.txt: no identity matched/);
    expect(await untouched()).to.deep.equal(before);
  });

  it('refuses, with signing set, a node archive altered with its hashes fixed up in the manifest', async function () {
    const m = await backup(signedConfig);
    const dir = backupDir(m.id);
    expect((await stat(join(dir, 'manifest.json.sig'))).isFile()).to.equal(true);
    // Someone who can write the repository swaps node-1's archive and fixes its size and sha256.
    const archive = m.artifacts.find((a) => a.kind === 'kubernetes-dir' && a.node === 'node-1')!;
    await writeFile(join(root, 'evil.yaml'), 'apiVersion: v1\nkind: Pod\n');
    await exec('tar', ['-cf', join(dir, archive.path), '-C', root, 'evil.yaml']);
    const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest;
    const entry = manifest.artifacts.find((a) => a.path === archive.path)!;
    entry.size = (await stat(join(dir, archive.path))).size;
    entry.sha256 = await sha256(join(dir, archive.path));
    await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');

    const before = await fingerprint();
    const restore = await kbur(signedConfig, 'restore', m.id, '--yes', '--with-kubernetes-dir');
    expect(restore.code, restore.stdout + restore.stderr).to.equal(5);
    expect(restore.stderr).to.match(/its manifest does not match its signature .*key SHA256:\S+ \(.*signing\.key\)/);
    const verify = await kbur(signedConfig, 'verify', m.id);
    expect(verify.code).to.equal(5);
    const recorded = JSON.parse(await readFile(join(dir, 'verify.json'), 'utf8')) as { ok: boolean; signature: string };
    expect(recorded.ok).to.equal(false);
    expect(recorded.signature).to.contain('does not match its signature');
    const dump = await kbur(signedConfig, 'restore-dump', m.id, '--node', 'node-1', '--profile', 'any', '--yes');
    expect(dump.code).to.equal(5);
    expect(dump.stderr).to.match(/does not match its signature/);
    expect(await fingerprint()).to.deep.equal(before);
  });

  it('sends the snapshot copies to the nodes decrypted when the backup has the identity, and says why not without it', async function () {
    const config = join(root, 'kbur-sealed-copies.yaml');
    const sealed = parse(await readFile(sealedConfig, 'utf8')) as Record<string, unknown>;
    await writeFile(config, stringify({ ...sealed, backup: { copySnapshotToNodes: true } }), { mode: 0o600 });
    const without = await runKbur(['--config', config, 'backup'], { KBUR_AGE_IDENTITY: '' });
    expect(without.code, without.stderr).to.equal(0);
    expect(without.stdout).to.match(/WARNING no snapshot copy on node-1: no copy sent: etcd\/snapshot\.db\.zst\.age is encrypted with age/);
    const withIdentity = await runKbur(['--config', config, 'backup'], { KBUR_AGE_IDENTITY: key() });
    expect(withIdentity.code, withIdentity.stderr).to.equal(0);
    expect(withIdentity.stdout).to.match(/snapshot copies kept on: node-1, node-2, node-3/);
    const id = /^backup (\S+): Completed/m.exec(withIdentity.stdout)![1]!;
    const plan = await kbur(config, 'restore', id, '--dry-run', '--identity', key());
    expect(plan.code, plan.stdout + plan.stderr).to.equal(0);
    expect(plan.stdout).to.match(/snapshot: the copy this node keeps/);
  });

  it('encrypts a dump (gzip by its agent, then age) and restore-dump puts it back with the identity, refusing without', async function () {
    const config = join(root, 'kbur-sealed-dump.yaml');
    const sealed = parse(await readFile(sealedConfig, 'utf8')) as Record<string, unknown>;
    await writeFile(config, stringify({ ...sealed, dumps: [{ node: 'node-1', profile: 'blob' }] }), { mode: 0o600 });
    const m = await backup(config);
    const dump = m.artifacts.find((a) => a.kind === 'dump')!;
    expect([dump.path, dump.compression, dump.encryption]).to.deep.equal(['dumps/node-1/blob/output.out.gz.age', 'gzip', 'age']);
    await shellFree('age', ['-d', '-i', key()], join(backupDir(m.id), dump.path), join(root, 'blob.gz'));
    await shellFree('gzip', ['-d', '-c'], join(root, 'blob.gz'), join(root, 'blob.out'));
    expect(await sha256(join(root, 'blob.out'))).to.equal(await sha256(join(root, 'blob.bin')));

    const args = ['--config', config, 'restore-dump', m.id, '--node', 'node-1', '--profile', 'blob', '--yes'];
    const refused = await runKbur(args, { KBUR_AGE_IDENTITY: '' });
    expect(refused.code).to.equal(9);
    expect(refused.stderr).to.match(/nothing was changed[\s\S]*is encrypted with age/);
    const run = await runKbur([...args, '--identity', key()]);
    expect(run.code, run.stdout + run.stderr).to.equal(0);
    expect(await sha256(join(root, 'restored.bin'))).to.equal(await sha256(join(root, 'blob.bin')));
  });

  it('restores an unsigned set without signing configured, and its plan says it is unsigned', async function () {
    const wanted = await keys();
    const m = await backup(sandbox.coordinatorConfig);
    await expectOnlyManifestFields(backupDir(m.id));
    await sandbox.etcdctl(['del', '--prefix', '/registry/configmaps/demo/']);
    const run = await kbur(sandbox.coordinatorConfig, 'restore', m.id, '--yes');
    expect(run.code, run.stdout + run.stderr).to.equal(0);
    expect(run.stdout).to.match(/note: unsigned: kbur.yaml has no signing key/);
    await waitForEtcdHealthy(sandbox);
    expect(await keys()).to.deep.equal(wanted);
  });
});

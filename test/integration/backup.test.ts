import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import type { Etcd3 } from 'etcd3';
import type { Manifest, Verification } from '../../shared/manifest.js';
import { createSandbox, waitForEtcdHealthy, type Sandbox } from '../sandbox/cluster.js';
import { etcdClient, putBulk } from '../helpers/etcd.js';
import { runKbur, spawnKbur } from '../helpers/kbur.js';

const exec = promisify(execFile);
const ETCDCTL_ENV = { PATH: process.env.PATH, ETCDCTL_API: '3' };

async function walk(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.map((e) => join(e.parentPath, e.name));
}

async function sha256(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
}

describe('kbur backup on a 3-member TLS etcd', function () {
  this.timeout(180_000);
  let root: string;
  let sandbox: Sandbox;
  let etcd: Etcd3;
  const backupDir = (id: string): string => join(sandbox.repoDir, 'sandbox', 'backups', id);
  const kbur = (...args: string[]) => runKbur(['--config', sandbox.coordinatorConfig, ...args]);

  async function backup(): Promise<{ code: number; manifest: Manifest; stderr: string }> {
    const run = await kbur('backup', '--json');
    return { code: run.code, manifest: JSON.parse(run.stdout) as Manifest, stderr: run.stderr };
  }

  before(async function () {
    root = await mkdtemp(join(tmpdir(), 'kbur-backup-test-'));
    sandbox = await createSandbox({ root });
    await sandbox.startAgents();
    etcd = await etcdClient(sandbox);
  });

  after(async function () {
    etcd?.close();
    await sandbox?.stop();
    await rm(root, { recursive: true, force: true });
  });

  it("backs up a follower's snapshot and every node's /etc/kubernetes into a Completed set", async function () {
    const status = JSON.parse((await sandbox.etcdctl(['endpoint', 'status', '-w', 'json'])).replace(/:(\d{16,})/g, ':"$1"')) as {
      Endpoint: string;
      Status: { leader: string; header: { member_id: string } };
    }[];
    const leaderUrl = status.find((s) => s.Status.leader === s.Status.header.member_id)!.Endpoint;
    const leaderNode = sandbox.nodes.find((n) => n.clientUrl === leaderUrl)!.name;

    const { code, manifest: m } = await backup();
    expect(code).to.equal(0);
    expect(m.phase).to.equal('Completed');
    expect(m.failures).to.deep.equal([]);
    expect(m.cluster).to.equal('sandbox');
    expect(m.etcd!.node).to.not.equal(leaderNode, 'a follower spares the leader');
    expect(m.etcd!.version).to.match(/^3\.4\./);
    expect(m.etcd!.members.map((x) => x.name).sort()).to.deep.equal(['node-1', 'node-2', 'node-3']);
    expect(m.etcd!.keyCount).to.be.at.least(sandbox.seededKeys);
    expect(m.artifacts.map((a) => a.path).sort()).to.deep.equal([
      'etcd/snapshot.db',
      'nodes/node-1/kubernetes.tar',
      'nodes/node-2/kubernetes.tar',
      'nodes/node-3/kubernetes.tar',
    ]);
    const dir = backupDir(m.id);
    for (const a of m.artifacts) expect(await sha256(join(dir, a.path)), a.path).to.equal(a.sha256);
    expect(m.artifacts.find((a) => a.node === 'node-1' && a.kind === 'kubernetes-dir')!.kubeadmConfigFiles).to.deep.equal([
      'kubeadm-config.yaml',
    ]);

    // The repository holds private keys: 0700 folders, 0600 files, nothing half-written.
    for (const p of [join(sandbox.repoDir, 'sandbox'), ...(await walk(join(sandbox.repoDir, 'sandbox')))]) {
      const st = await stat(p);
      expect(st.mode & 0o777, relative(sandbox.repoDir, p)).to.equal(st.isDirectory() ? 0o700 : 0o600);
      expect(p).to.not.match(/\.part$/);
    }
  });

  it('gives a snapshot that plain etcdctl checks and restores, and archives that plain tar unpacks with their modes', async function () {
    const { manifest: m } = await backup();
    const dir = backupDir(m.id);
    const { stdout } = await exec('etcdctl', ['snapshot', 'status', join(dir, 'etcd/snapshot.db'), '-w', 'json'], { env: ETCDCTL_ENV });
    expect((JSON.parse(stdout) as { revision: number }).revision).to.equal(m.etcd!.revision);
    const restored = join(root, `plain-restore-${m.id}`);
    await exec(
      'etcdctl',
      [
        'snapshot',
        'restore',
        join(dir, 'etcd/snapshot.db'),
        '--data-dir',
        restored,
        '--name',
        'node-1',
        '--initial-cluster',
        'node-1=https://127.0.0.11:2380',
        '--initial-advertise-peer-urls',
        'https://127.0.0.11:2380',
      ],
      { env: ETCDCTL_ENV },
    );
    expect((await stat(join(restored, 'member/snap/db'))).size).to.be.greaterThan(0);

    const node = sandbox.nodes[1]!;
    const out = join(root, `untar-${m.id}`);
    await mkdir(out);
    await exec('tar', ['-xpf', join(dir, `nodes/${node.name}/kubernetes.tar`), '-C', out]);
    const originals = (await walk(node.kubernetesDir)).filter((p) => !p.endsWith('.part'));
    expect(originals.length).to.be.greaterThan(20);
    for (const original of originals) {
      const rel = relative(node.kubernetesDir, original);
      const [a, b] = await Promise.all([stat(original), stat(join(out, rel))]);
      expect(b.mode, rel).to.equal(a.mode);
      expect(b.uid, rel).to.equal(a.uid);
      if (!a.isFile()) continue;
      expect(Math.floor(b.mtimeMs / 1000), rel).to.equal(Math.floor(a.mtimeMs / 1000));
      expect(await sha256(join(out, rel)), rel).to.equal(await sha256(original));
    }
    expect((await stat(join(out, 'pki/etcd/peer.key'))).mode & 0o777).to.equal(0o600);
  });

  it('lists and describes backups, naming the node archives that hold a kubeadm ClusterConfiguration', async function () {
    const { manifest: m } = await backup();
    const list = await kbur('list', '--json');
    expect(list.code).to.equal(0);
    const rows = JSON.parse(list.stdout) as { id: string; phase: string }[];
    expect(rows.map((r) => r.id)).to.include(m.id);
    expect(rows.map((r) => r.id)).to.deep.equal([...rows.map((r) => r.id)].sort(), 'ids sort by time');
    const described = await kbur('describe', m.id);
    expect(described.code).to.equal(0);
    expect(described.stdout).to.match(/kubeadm ClusterConfiguration:\n\s+node-1: kubeadm-config\.yaml/);
    expect(described.stdout).to.contain(`revision ${m.etcd!.revision}`);
  });

  it('finishes its work when its reader closes the pipe (kbur ... | head), instead of dying on EPIPE', async function () {
    const { child, done } = spawnKbur(['--config', sandbox.coordinatorConfig, 'list']);
    child.stdout!.destroy();
    const run = await done;
    expect(run.stderr).to.not.contain('EPIPE');
    expect(run.code).to.equal(0);
  });

  it('verify finds one flipped byte, records it beside the manifest and leaves the manifest as it was', async function () {
    const { manifest: m } = await backup();
    const dir = backupDir(m.id);
    expect((await kbur('verify', m.id)).code).to.equal(0);
    const manifestBefore = await sha256(join(dir, 'manifest.json'));

    const file = await open(join(dir, 'etcd/snapshot.db'), 'r+');
    const byte = Buffer.alloc(1);
    await file.read(byte, 0, 1, 4096);
    await file.write(Buffer.from([byte[0]! ^ 0xff]), 0, 1, 4096);
    await file.close();

    const run = await kbur('verify', m.id);
    expect(run.code).to.equal(5);
    expect(run.stdout).to.match(/MISMATCH etcd\/snapshot\.db: .*integrity hash mismatch/);
    const v = JSON.parse(await readFile(join(dir, 'verify.json'), 'utf8')) as Verification;
    expect(v.ok).to.equal(false);
    expect(v.artifacts.filter((a) => !a.ok).map((a) => a.path)).to.deep.equal(['etcd/snapshot.db']);
    expect(await sha256(join(dir, 'manifest.json'))).to.equal(manifestBefore);
  });

  it('gives a PartiallyFailed set, saying which node, when one agent is down', async function () {
    await sandbox.stopAgent('node-3');
    try {
      const { code, manifest: m } = await backup();
      expect(code).to.equal(3);
      expect(m.phase).to.equal('PartiallyFailed');
      expect(m.failures.map((f) => f.part)).to.deep.equal(['node/node-3']);
      expect(m.failures[0]!.message).to.match(/node-3 .*agent not reachable/);
      expect(m.artifacts.map((a) => a.path)).to.include('etcd/snapshot.db');
      expect(m.artifacts.map((a) => a.path)).to.not.include('nodes/node-3/kubernetes.tar');
    } finally {
      await sandbox.startAgents(['node-3']);
    }
  });

  it('gives a Failed set with no artifacts when no agent answers', async function () {
    const config = join(root, 'unreachable.yaml');
    const text = (await readFile(sandbox.coordinatorConfig, 'utf8')).replace(/:7443/g, ':7999');
    await writeFile(config, text);
    const run = await runKbur(['--config', config, 'backup', '--json']);
    expect(run.code).to.equal(4);
    const m = JSON.parse(run.stdout) as Manifest;
    expect(m.phase).to.equal('Failed');
    expect(m.artifacts).to.deep.equal([]);
    expect(m.failures.map((f) => f.part)).to.deep.equal(['node/node-1', 'node/node-2', 'node/node-3', 'etcd']);
  });

  it('survives the snapshotted member killed mid-stream: a whole snapshot from another member or Failed, never a truncated file', async function () {
    await putBulk(etcd, '/registry/bulk/', 40);
    const logs = join(root, 'logs');
    const snapshotStarts = async (): Promise<Map<string, number>> =>
      new Map(
        await Promise.all(
          sandbox.nodes.map(
            async (n) =>
              [n.name, (await readFile(join(logs, `agent-${n.name}.log`), 'utf8')).split('"method":"SnapshotEtcd"').length] as [
                string,
                number,
              ],
          ),
        ),
      );
    const before = await snapshotStarts();

    const { child, done } = spawnKbur(['--config', sandbox.coordinatorConfig, 'backup', '--json']);
    // Wait until snapshot bytes reach the repository, then freeze the coordinator so the stream
    // cannot finish before the member dies.
    const deadline = Date.now() + 30_000;
    let part: string | undefined;
    while (!part && Date.now() < deadline) {
      const files = await walk(join(sandbox.repoDir, 'sandbox', 'backups')).catch(() => []);
      for (const f of files) if (f.endsWith('snapshot.db.part') && (await stat(f).catch(() => undefined))?.size) part = f;
      if (!part) await new Promise((r) => setTimeout(r, 5));
    }
    expect(part, 'the snapshot stream started').to.be.a('string');
    child.kill('SIGSTOP');
    const after = await snapshotStarts();
    const victim = sandbox.nodes.find((n) => after.get(n.name)! > before.get(n.name)!)!.name;
    sandbox.kubelet.kill(victim, 'etcd', 'SIGKILL');
    child.kill('SIGCONT');
    const run = await done;

    expect(run.stdout, `kbur backup printed no manifest (exit ${run.code}): ${run.stderr}`).to.not.equal('');
    const m = JSON.parse(run.stdout) as Manifest;
    expect([0, 4]).to.include(run.code);
    if (run.code === 0) {
      expect(m.etcd!.node).to.not.equal(victim);
      expect(m.etcd!.fallbacks.map((f) => f.node)).to.deep.equal([victim]);
    } else {
      expect(m.phase).to.equal('Failed');
      expect(m.artifacts.map((a) => a.path)).to.not.include('etcd/snapshot.db');
    }
    const files = await walk(backupDir(m.id));
    expect(files.filter((f) => f.endsWith('.part'))).to.deep.equal([]);
    const verify = await kbur('verify', m.id);
    expect(verify.code, verify.stdout).to.equal(0);
    await sandbox.kubelet.waitFor(victim, 'etcd', 'running');
    await waitForEtcdHealthy(sandbox);
    await etcd.delete().prefix('/registry/bulk/');
  });

  describe('bad input', function () {
    const badConfigs: [string, string | undefined, RegExp][] = [
      ['a missing config', undefined, /kbur config .*missing\.yaml does not exist/],
      ['a YAML syntax error', 'cluster: demo\nnodes: [\n', /bad\.yaml:\d+:\d+: YAML syntax error/],
      [
        'an unknown key',
        'cluster: demo\ntls: {ca: a, cert: b, key: c}\nnodes: [{name: n, agent: 127.0.0.11:7443}]\nrepository: {type: local, path: r}\nstalTimeout: 5\n',
        /bad\.yaml:5: unknown key "stalTimeout"/,
      ],
      [
        'a wrong type',
        'cluster: demo\ntls: {ca: a, cert: b, key: c}\nnodes: node-1\nrepository: {type: local, path: r}\n',
        /bad\.yaml:3: "nodes": .*expected array/,
      ],
    ];
    for (const [what, text, message] of badConfigs) {
      it(`gives one clear error and exit code 2 for ${what}`, async function () {
        const file = join(root, text === undefined ? 'missing.yaml' : 'bad.yaml');
        if (text !== undefined) await writeFile(file, text);
        const run = await runKbur(['--config', file, 'backup']);
        expect(run.code).to.equal(2);
        expect(run.stdout).to.equal('');
        const lines = run.stderr.trim().split('\n');
        expect(lines[0]).to.match(/^kbur: error: /);
        expect(lines[0]).to.match(message);
        expect(
          lines.slice(1).every((l) => /^ {2}(what to do|cause): /.test(l)),
          run.stderr,
        ).to.equal(true);
      });
    }

    it('says a backup id does not exist (exit 6) or is not an id (exit 2)', async function () {
      const missing = await kbur('describe', '20200101T000000Z-0000');
      expect(missing.code).to.equal(6);
      expect(missing.stderr).to.match(/no backup 20200101T000000Z-0000/);
      const malformed = await kbur('verify', '../../etc');
      expect(malformed.code).to.equal(2);
      expect(malformed.stderr).to.match(/is not a backup id/);
    });

    it('shows a backup without manifest as Incomplete and refuses to verify it', async function () {
      const id = '20200101T000000Z-abcd';
      await mkdir(join(backupDir(id), 'etcd'), { recursive: true });
      await writeFile(join(backupDir(id), 'etcd', 'snapshot.db.part'), 'half');
      const rows = JSON.parse((await kbur('list', '--json')).stdout) as { id: string; phase: string }[];
      expect(rows.find((r) => r.id === id)!.phase).to.equal('Incomplete');
      const run = await kbur('verify', id);
      expect(run.code).to.equal(9);
      expect(run.stderr).to.match(/has no manifest\.json: it never completed/);
    });
  });
});

import { createHash } from 'node:crypto';
import { open, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { expect } from 'chai';
import type { Manifest } from '../../shared/manifest.js';
import { createSandbox, waitForEtcdHealthy, type Sandbox, type SandboxNode } from '../sandbox/cluster.js';
import { runKbur } from '../helpers/kbur.js';

async function sha256(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
}

async function flipByte(file: string, at: number): Promise<void> {
  const f = await open(file, 'r+');
  const b = Buffer.alloc(1);
  await f.read(b, 0, 1, at);
  await f.write(Buffer.from([b[0]! ^ 0xff]), 0, 1, at);
  await f.close();
}

describe('kbur restore on a 3-member TLS etcd', function () {
  this.timeout(240_000);
  let root: string;
  let sandbox: Sandbox;
  const kbur = (...args: string[]) => runKbur(['--config', sandbox.coordinatorConfig, ...args]);
  const keys = async (): Promise<string[]> =>
    (await sandbox.etcdctl(['get', '--prefix', '/registry/', '--keys-only'])).split('\n').filter(Boolean).sort();

  async function backup(): Promise<Manifest> {
    const run = await kbur('backup', '--json');
    expect(run.code, run.stderr).to.equal(0);
    return JSON.parse(run.stdout) as Manifest;
  }

  /** Everything a restore could touch: manifests (with content), data dirs (with content), etcd processes. */
  async function fingerprint(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const node of sandbox.nodes) {
      out[`${node.name} node dir`] = (await readdir(node.dir)).sort().join(',');
      out[`${node.name} etcd pid`] = String(sandbox.kubelet.pid(node.name, 'etcd'));
      for (const dir of [node.manifestsDir, node.dataDir]) {
        for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
          const p = join(e.parentPath, e.name);
          out[relative(root, p)] = e.isFile() ? await sha256(p) : `inode ${(await stat(p)).ino}`;
        }
      }
    }
    return out;
  }

  async function restoreIdFrom(stdout: string): Promise<string> {
    const id = /restore (\S+) started/.exec(stdout)?.[1];
    expect(id, stdout).to.be.a('string');
    return id!;
  }

  /** A restore of `backupId` that crashes right after `step` (a failpoint): its restore id. */
  async function restoreCrashedAfter(step: 'stage' | 'stop', backupId: string): Promise<string> {
    const crashed = await runKbur(['--config', sandbox.coordinatorConfig, 'restore', backupId, '--yes'], {
      KBUR_FAILPOINT: `crash-after:${step}`,
    });
    expect(crashed.code, 'the failpoint ends kbur').to.not.equal(0);
    return restoreIdFrom(crashed.stdout);
  }

  async function waitHealthy(): Promise<void> {
    await waitForEtcdHealthy(sandbox);
  }

  before(async function () {
    root = await mkdtemp(join(tmpdir(), 'kbur-restore-test-'));
    sandbox = await createSandbox({ root });
    await sandbox.startAgents();
  });

  after(async function () {
    await sandbox?.stop();
    await rm(root, { recursive: true, force: true });
  });

  it('restores every member from one snapshot after a disaster, keeps the old data dirs and proves the keys are back', async function () {
    const before = await keys();
    const m = await backup();
    // The disaster: a namespace's objects deleted, and one member's data dir wiped.
    await sandbox.etcdctl(['del', '--prefix', '/registry/configmaps/demo/']);
    const victim = sandbox.nodes[2]!;
    await sandbox.wipeEtcdData(victim.name);
    expect(await keys()).to.not.deep.equal(before);

    const run = await kbur('restore', m.id, '--yes');
    expect(run.code, run.stdout + run.stderr).to.equal(0);
    const rid = await restoreIdFrom(run.stdout);
    expect(run.stdout).to.match(/verify: revision \d+ \(backup \d+\); \d+ keys \(backup \d+\)/);
    await waitHealthy();
    expect(await keys()).to.deep.equal(before);
    for (const node of sandbox.nodes) {
      expect(await keys(), node.name).to.deep.equal(before);
      const names = await readdir(node.dir);
      if (node !== victim) expect(names, node.name).to.include(`etcd-data.kbur-${rid}`);
      expect(sandbox.kubelet.running(node.name, 'kube-apiserver'), `${node.name} apiserver back`).to.equal(true);
    }
    const members = JSON.parse((await sandbox.etcdctl(['member', 'list', '-w', 'json'])).replace(/:(\d{16,})/g, ':"$1"')) as {
      members: { name: string }[];
    };
    expect(members.members.map((x) => x.name).sort()).to.deep.equal(['node-1', 'node-2', 'node-3']);
    const journal = JSON.parse(await readFile(join(sandbox.repoDir, 'sandbox', 'restores', rid, 'journal.json'), 'utf8')) as {
      status: string;
    };
    expect(journal.status).to.equal('completed');
  });

  it('--dry-run runs the preflight, prints the plan and changes nothing', async function () {
    const m = await backup();
    const before = await fingerprint();
    const run = await kbur('restore', m.id, '--dry-run');
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout).to.contain('dry run: preflight passed; nothing was changed');
    expect(run.stdout).to.match(/node-2 \(.*\): member node-2, peers https:\/\/.*:2380/);
    expect(await fingerprint()).to.deep.equal(before);
  });

  it('refuses, touching nothing, when one agent is down at preflight', async function () {
    const m = await backup();
    await sandbox.stopAgent('node-2');
    try {
      const before = await fingerprint();
      const run = await kbur('restore', m.id, '--yes');
      expect(run.code).to.equal(9);
      expect(run.stderr).to.match(/preflight found \d+ problem\(s\); nothing was changed/);
      expect(run.stderr).to.match(/node-2 .*agent not reachable/);
      expect(await fingerprint()).to.deep.equal(before);
    } finally {
      await sandbox.startAgents(['node-2']);
    }
  });

  it('refuses a snapshot with one byte flipped in the repository before anything stops', async function () {
    const m = await backup();
    await flipByte(join(sandbox.repoDir, 'sandbox', 'backups', m.id, 'etcd', 'snapshot.db'), 2048);
    const before = await fingerprint();
    const run = await kbur('restore', m.id, '--yes');
    expect(run.code).to.equal(9);
    expect(run.stderr).to.match(/snapshot etcd\/snapshot\.db: etcd snapshot integrity hash mismatch/);
    expect(await fingerprint()).to.deep.equal(before);
  });

  it('stops before the stop step when a staged copy is corrupted on one node', async function () {
    const m = await backup();
    const before = await fingerprint();
    const rid = await restoreCrashedAfter('stage', m.id);
    await flipByte(join(sandbox.nodes[1]!.stateDir, 'restores', rid, 'snapshot.db'), 1000);

    const run = await kbur('restore', '--resume', rid, '--yes');
    expect(run.code).to.equal(5);
    expect(run.stdout).to.match(/verify-staged node-2: FAILED: .*staged snapshot .* is damaged/);
    expect(run.stdout).to.not.match(/^stop /m);
    expect(await fingerprint()).to.deep.equal(before);
    const rollback = await kbur('restore', '--rollback', rid, '--yes');
    expect(rollback.code).to.equal(0);
    expect(rollback.stdout).to.contain('nothing to put back');
    expect(await fingerprint()).to.deep.equal(before);
  });

  it('resumes to completion after the coordinator is SIGKILLed right after the stop step', async function () {
    const wanted = await keys();
    const m = await backup();
    await sandbox.etcdctl(['put', '/registry/configmaps/demo/after-backup', 'x']);
    const rid = await restoreCrashedAfter('stop', m.id);
    for (const node of sandbox.nodes) expect(sandbox.kubelet.running(node.name, 'etcd'), `${node.name} etcd stopped`).to.equal(false);

    const run = await kbur('restore', '--resume', rid, '--yes');
    expect(run.code, run.stdout + run.stderr).to.equal(0);
    await waitHealthy();
    expect(await keys()).to.deep.equal(wanted);
  });

  it('resumes after an agent restarted while its etcd manifest was held (it finds etcd in the held copy)', async function () {
    const wanted = await keys();
    const m = await backup();
    const rid = await restoreCrashedAfter('stop', m.id);
    await sandbox.stopAgent('node-2');
    await sandbox.startAgents(['node-2']);
    const run = await kbur('restore', '--resume', rid, '--yes');
    expect(run.code, run.stdout + run.stderr).to.equal(0);
    await waitHealthy();
    expect(await keys()).to.deep.equal(wanted);
  });

  it('refuses a second restore, touching nothing, while another one holds the nodes stopped', async function () {
    const m = await backup();
    const first = await restoreCrashedAfter('stop', m.id);
    const before = await fingerprint();
    // The crashed restore's lock is stale: only it (--resume/--rollback) may go on under it.
    const locked = await kbur('restore', m.id, '--yes');
    expect(locked.code).to.equal(12);
    expect(locked.stderr).to.contain(`locked by restore ${first} on host`).and.contain('which is stale');
    // With the lock broken by hand, the agents still refuse it.
    expect((await kbur('unlock', '--force')).code).to.equal(0);
    const second = await kbur('restore', m.id, '--yes');
    expect(second.code).to.equal(9);
    expect(second.stderr).to.contain(`node-1: restore ${first} is still in progress here`);
    expect(await fingerprint()).to.deep.equal(before);
    const resumed = await kbur('restore', '--resume', first, '--yes');
    expect(resumed.code, resumed.stdout + resumed.stderr).to.equal(0);
    await waitHealthy();
  });

  it('--rollback after a restore gives back the data as it was before the restore', async function () {
    const m = await backup();
    await sandbox.etcdctl(['put', '/registry/configmaps/demo/written-after-backup', 'y']);
    const current = await keys();
    const run = await kbur('restore', m.id, '--yes');
    expect(run.code, run.stderr).to.equal(0);
    const rid = await restoreIdFrom(run.stdout);
    await waitHealthy();
    expect(await keys()).to.not.include('/registry/configmaps/demo/written-after-backup');

    const rollback = await kbur('restore', '--rollback', rid, '--yes');
    expect(rollback.code, rollback.stdout + rollback.stderr).to.equal(0);
    await waitHealthy();
    expect(await keys()).to.deep.equal(current);
    for (const node of sandbox.nodes) {
      expect(await readdir(node.dir), node.name).to.include(`etcd-data.kbur-${rid}-restored`);
      expect(sandbox.kubelet.running(node.name, 'kube-apiserver')).to.equal(true);
    }
  });

  it("--with-kubernetes-dir puts back each node's /etc/kubernetes, moving every replaced file aside first", async function () {
    const [n1, n2, n3] = sandbox.nodes as [SandboxNode, SandboxNode, SandboxNode];
    const adminConf = join(n1.kubernetesDir, 'admin.conf');
    const original = await readFile(adminConf, 'utf8');
    const m = await backup();
    // A rebuilt machine: a kubeconfig rewritten, a CA gone, and a file the backup never had.
    await writeFile(adminConf, 'rewritten by someone\n');
    await rm(join(n2.kubernetesDir, 'pki', 'ca.crt'));
    await writeFile(join(n3.kubernetesDir, 'notes.txt'), 'local notes\n');

    const run = await kbur('restore', m.id, '--yes', '--with-kubernetes-dir');
    expect(run.code, run.stdout + run.stderr).to.equal(0);
    const rid = await restoreIdFrom(run.stdout);
    expect(run.stdout).to.match(/restore-kubernetes node-1: restored .* 1 files replaced/);
    await waitHealthy();
    expect(await readFile(adminConf, 'utf8')).to.equal(original);
    expect((await stat(adminConf)).mode & 0o777).to.equal(0o600);
    expect(await readFile(join(n1.kubernetesDir, `kbur-aside-${rid}`, 'admin.conf'), 'utf8')).to.equal('rewritten by someone\n');
    expect((await stat(join(n2.kubernetesDir, 'pki', 'ca.crt'))).isFile()).to.equal(true);
    expect(await readFile(join(n3.kubernetesDir, 'notes.txt'), 'utf8')).to.equal('local notes\n');
    for (const node of sandbox.nodes) {
      expect(sandbox.kubelet.running(node.name, 'kube-apiserver'), node.name).to.equal(true);
      expect(
        (await readdir(node.kubernetesDir)).filter((d) => d.startsWith('kbur-held-')),
        `${node.name} held folder cleaned`,
      ).to.deep.equal([]);
    }
  });

  it('refuses to restore without --yes when not on a terminal', async function () {
    const m = await backup();
    const before = await fingerprint();
    const run = await kbur('restore', m.id);
    expect(run.code).to.equal(2);
    expect(run.stderr).to.match(/refusing to restore .* without confirmation/);
    expect(await fingerprint()).to.deep.equal(before);
  });

  describe('with backup.copySnapshotToNodes (a copy of the snapshot kept on every node)', function () {
    let copiesConfig: string;
    const kburCopies = (...args: string[]) => runKbur(['--config', copiesConfig, ...args]);
    const copyOf = (node: SandboxNode, id: string): string => join(node.stateDir, 'snapshots', `${id}.db`);

    async function backupWithCopies(): Promise<Manifest & { nodeCopies: { node: string; ok: boolean; detail: string }[] }> {
      const run = await kburCopies('backup', '--json');
      expect(run.code, run.stderr).to.equal(0);
      return JSON.parse(run.stdout) as Manifest & { nodeCopies: { node: string; ok: boolean; detail: string }[] };
    }

    before(async function () {
      copiesConfig = join(root, 'kbur-copies.yaml');
      await writeFile(copiesConfig, `${await readFile(sandbox.coordinatorConfig, 'utf8')}backup:\n  copySnapshotToNodes: true\n`, {
        mode: 0o600,
      });
    });

    it('keeps a checked copy on every node, only the newest, and a restore stages from them without reading the repository', async function () {
      // An older backup whose copies the next one replaces, often in the same second: ids of one second do not sort by time.
      await backupWithCopies();
      const m = await backupWithCopies();
      const snapshot = m.artifacts.find((a) => a.kind === 'etcd-snapshot')!;
      expect(m.nodeCopies.map((c) => [c.node, c.ok])).to.deep.equal(sandbox.nodes.map((n) => [n.name, true]));
      for (const node of sandbox.nodes) {
        expect(await sha256(copyOf(node, m.id)), node.name).to.equal(snapshot.sha256);
        // localSnapshots.keep defaults to 1: the older backup's copy is gone, the new one whole.
        expect(await readdir(join(node.stateDir, 'snapshots')), node.name).to.deep.equal([`${m.id}.db`, `${m.id}.json`]);
      }

      const dry = await kbur('restore', m.id, '--dry-run');
      expect(dry.code, dry.stderr).to.equal(0);
      expect(dry.stdout.match(/snapshot: the copy this node keeps/g)).to.have.length(3);

      // The repository's copy is damaged: a restore that still reads it would refuse.
      await flipByte(join(sandbox.repoDir, 'sandbox', 'backups', m.id, 'etcd', 'snapshot.db'), 2048);
      const before = await keys();
      await sandbox.etcdctl(['del', '--prefix', '/registry/configmaps/demo/']);
      const run = await kbur('restore', m.id, '--yes');
      expect(run.code, run.stdout + run.stderr).to.equal(0);
      expect(run.stdout).to.contain("the repository's copy is not needed");
      for (const node of sandbox.nodes) {
        expect(run.stdout).to.match(new RegExp(`^stage ${node.name}: staged .* from the copy this node keeps`, 'm'));
        expect(run.stdout).to.match(new RegExp(`^verify-staged ${node.name}: checked as it was staged, in this run`, 'm'));
      }
      await waitHealthy();
      expect(await keys()).to.deep.equal(before);
    });

    it('uploads the snapshot to a node whose copy is damaged, after the dry run says so, before anything stops', async function () {
      const m = await backupWithCopies();
      await flipByte(copyOf(sandbox.nodes[1]!, m.id), 4096);
      const dry = await kbur('restore', m.id, '--dry-run');
      expect(dry.code, dry.stderr).to.equal(0);
      expect(dry.stdout).to.match(
        /note: node-2: its copy of the snapshot cannot be used \(.*integrity hash mismatch.*\); the snapshot is uploaded to it instead/,
      );
      expect(dry.stdout).to.match(/node-2 \(.*\n {6}snapshot: uploaded from the repository/);

      const before = await keys();
      const run = await kbur('restore', m.id, '--yes');
      expect(run.code, run.stdout + run.stderr).to.equal(0);
      // A restore's preflight only looks for the copy; its stage step rereads it, refuses it, and uploads instead.
      expect(run.stdout).to.match(/^stage node-2: its copy cannot be used \(.*\); uploading the snapshot from the repository instead$/m);
      expect(run.stdout).to.match(/^stage node-2: staged .* bytes uploaded, sha256 checked on the node/m);
      expect(run.stdout).to.match(/^stage node-1: staged .* from the copy this node keeps/m);
      const stage = run.stdout.indexOf('stage node-2: staged');
      expect(stage).to.be.greaterThan(-1);
      expect(run.stdout.indexOf('\nstop ')).to.be.greaterThan(stage);
      await waitHealthy();
      expect(await keys()).to.deep.equal(before);
    });

    it('keeps the backup whole when a node refuses copies (localSnapshots.keep: 0), and uploads to that node only', async function () {
      const node = sandbox.nodes[2]!;
      const original = await readFile(node.agentConfig, 'utf8');
      await sandbox.stopAgent(node.name);
      await writeFile(node.agentConfig, `${original}localSnapshots:\n  keep: 0\n`);
      await sandbox.startAgents([node.name]);
      try {
        const text = await kburCopies('backup');
        expect(text.code, text.stdout + text.stderr).to.equal(0);
        expect(text.stdout).to.match(/snapshot copies kept on: node-1, node-2\n/);
        expect(text.stdout).to.match(/WARNING no snapshot copy on node-3: .*keeps no snapshot copies \(localSnapshots\.keep is 0/);
        const m = await backupWithCopies();
        expect(m.phase).to.equal('Completed');
        expect(m.nodeCopies.find((c) => c.node === node.name)).to.deep.include({ ok: false });
        const before = await keys();
        const run = await kbur('restore', m.id, '--yes');
        expect(run.code, run.stdout + run.stderr).to.equal(0);
        expect(run.stdout).to.match(/^stage node-3: staged .* bytes uploaded/m);
        expect(run.stdout).to.match(/^stage node-1: staged .* from the copy this node keeps/m);
        await waitHealthy();
        expect(await keys()).to.deep.equal(before);
      } finally {
        await sandbox.stopAgent(node.name);
        await writeFile(node.agentConfig, original);
        await sandbox.startAgents([node.name]);
      }
    });
  });
});

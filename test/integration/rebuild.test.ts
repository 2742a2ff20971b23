import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { lstat, mkdtemp, readFile, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { parse, stringify } from 'yaml';
import type { Manifest } from '../../shared/manifest.js';
import { createSandbox, waitForEtcdHealthy, type Sandbox, type SandboxNode } from '../sandbox/cluster.js';
import { runKbur } from '../helpers/kbur.js';

const run = promisify(execFile);

/** Every entry of a folder (kbur's own folders left out): type, mode, owner, and content or link target. */
async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const p = join(e.parentPath, e.name);
    const rel = relative(dir, p);
    if (/^kbur-/.test(rel)) continue;
    const st = await lstat(p);
    const what = st.isFile()
      ? createHash('sha256')
          .update(await readFile(p))
          .digest('hex')
      : st.isSymbolicLink()
        ? `-> ${await readlink(p)}`
        : st.isDirectory()
          ? 'dir'
          : 'other';
    out[rel] = `${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid} ${what}`;
  }
  return out;
}

describe('kbur restore rebuilds reset control-plane nodes (agents under the unit read-only /etc)', function () {
  this.timeout(300_000);
  let root: string;
  let sandbox: Sandbox;
  const kbur = (...args: string[]) => runKbur(['--config', sandbox.coordinatorConfig, ...args]);
  const keys = async (): Promise<string[]> =>
    (await sandbox.etcdctl(['get', '--prefix', '/registry/', '--keys-only'])).split('\n').filter(Boolean).sort();

  async function backup(config = sandbox.coordinatorConfig): Promise<Manifest> {
    const r = await runKbur(['--config', config, 'backup', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    return JSON.parse(r.stdout) as Manifest;
  }

  function restoreIdFrom(stdout: string): string {
    const id = /restore (\S+) started/.exec(stdout)?.[1];
    expect(id, stdout).to.be.a('string');
    return id!;
  }

  async function waitHealthy(nodes: SandboxNode[] = sandbox.nodes): Promise<void> {
    await waitForEtcdHealthy(
      sandbox,
      nodes.map((n) => n.clientUrl),
      60_000,
    );
  }

  /** The node's archive in the backup, unpacked by plain tar as root (owners kept). */
  async function archiveTree(m: Manifest, node: SandboxNode): Promise<Record<string, string>> {
    const dir = await mkdtemp(join(root, 'archive-'));
    try {
      await run('tar', ['-xpf', join(sandbox.repoDir, 'sandbox', 'backups', m.id, 'nodes', node.name, 'kubernetes.tar'), '-C', dir]);
      return await tree(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** What a reset node has: nothing in manifests/, pki/, no kubeconfigs, an empty data dir, no etcd. */
  async function expectReset(node: SandboxNode): Promise<void> {
    expect(await readdir(node.manifestsDir), `${node.name} manifests`).to.deep.equal([]);
    expect(await readdir(join(node.kubernetesDir, 'pki')), `${node.name} pki`).to.deep.equal([]);
    expect(await readdir(node.dataDir), `${node.name} data dir`).to.deep.equal([]);
    expect(sandbox.kubelet.running(node.name, 'etcd'), `${node.name} etcd`).to.equal(false);
  }

  /** The node's etc/ holds only kubernetes/: nothing was written beside /etc/kubernetes. */
  async function expectNothingBesideKubernetesDir(node: SandboxNode): Promise<void> {
    expect(await readdir(dirname(node.kubernetesDir)), `${node.name} etc/`).to.deep.equal(['kubernetes']);
  }

  before(async function () {
    root = await mkdtemp(join(tmpdir(), 'kbur-rebuild-test-'));
    sandbox = await createSandbox({ root });
    await sandbox.startAgents(undefined, { protectSystem: true });
    // The agents really run with etc/ read-only and the kubernetes dir writable.
    for (const node of sandbox.nodes) {
      const mounts = await readFile(`/proc/${sandbox.agentPid(node.name)}/mountinfo`, 'utf8');
      const options = (dir: string): string | undefined =>
        mounts
          .split('\n')
          .map((l) => l.split(' '))
          .filter((f) => f[4] === dir)
          .at(-1)?.[5];
      expect(options(dirname(node.kubernetesDir)), `${node.name} etc/ mount`).to.match(/^ro\b/);
      expect(options(node.kubernetesDir), `${node.name} kubernetes dir mount`).to.match(/^rw\b/);
    }
  });

  after(async function () {
    await sandbox?.stop();
    if (!process.env.KBUR_KEEP_TEST_ROOT) await rm(root, { recursive: true, force: true });
  });

  it('brings all three reset nodes back from one backup: keys, /etc/kubernetes as archived (modes, owners), old state moved aside', async function () {
    const wanted = await keys();
    const m = await backup();
    const n1 = sandbox.nodes[0]!;
    // kubeadm reset leaves files it does not know of: this one differs from the archive's.
    await writeFile(join(n1.kubernetesDir, 'kubeadm-config.yaml'), 'edited after the backup\n');
    for (const node of sandbox.nodes) await sandbox.resetNode(node.name);
    for (const node of sandbox.nodes) await expectReset(node);

    const r = await kbur('restore', m.id, '--yes');
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    const rid = restoreIdFrom(r.stdout);
    for (const node of sandbox.nodes) {
      expect(r.stdout).to.match(new RegExp(`${node.name} \\(.*\\): member ${node.name}, peers ${node.peerUrl}`));
      expect(r.stdout).to.match(new RegExp(`^restore-kubernetes ${node.name}: restored .*static pod manifests held back`, 'm'));
      expect(r.stdout).to.match(new RegExp(`^start-etcd ${node.name}: moved etcd.yaml back`, 'm'));
    }
    expect(r.stdout.match(/found: manifests: none; pki: none; kubeconfigs: none; data dir: /g)).to.have.length(3);
    expect(r.stdout.match(/REBUILD: no etcd member here/g)).to.have.length(3);
    // The archive is unpacked before the member is restored, etcd started after both.
    expect(r.stdout.indexOf('\nrestore-kubernetes ')).to.be.lessThan(r.stdout.indexOf('\nrestore node-'));
    expect(r.stdout.indexOf('\nrestore node-')).to.be.lessThan(r.stdout.indexOf('\nstart-etcd '));

    await waitHealthy();
    expect(await keys()).to.deep.equal(wanted);
    for (const node of sandbox.nodes) {
      expect(await tree(node.kubernetesDir), `${node.name} /etc/kubernetes`).to.deep.equal(await archiveTree(m, node));
      expect(sandbox.kubelet.running(node.name, 'kube-apiserver'), `${node.name} apiserver`).to.equal(true);
      expect(await readdir(node.dir), node.name).to.include(`etcd-data.kbur-${rid}`);
      expect(
        (await readdir(node.kubernetesDir)).filter((d) => /^kbur-(held|unpack)-/.test(d)),
        node.name,
      ).to.deep.equal([]);
      await expectNothingBesideKubernetesDir(node);
    }
    expect(await readFile(join(n1.kubernetesDir, `kbur-aside-${rid}`, 'kubeadm-config.yaml'), 'utf8')).to.equal(
      'edited after the backup\n',
    );
  });

  it("rebuilds reset nodes from the snapshot copies they kept (kubeadm reset leaves the agent's state dir): nothing uploaded", async function () {
    const wanted = await keys();
    const copiesConfig = join(root, 'kbur-copies.yaml');
    await writeFile(copiesConfig, `${await readFile(sandbox.coordinatorConfig, 'utf8')}backup:\n  copySnapshotToNodes: true\n`, {
      mode: 0o600,
    });
    const m = await backup(copiesConfig);
    for (const node of sandbox.nodes) await sandbox.resetNode(node.name);
    for (const node of sandbox.nodes) {
      await expectReset(node);
      expect(await readdir(join(node.stateDir, 'snapshots')), `${node.name} kept copies`).to.include(`${m.id}.db`);
    }

    const r = await runKbur(['--config', copiesConfig, 'restore', m.id, '--with-kubernetes-dir', '--yes']);
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    expect(r.stdout.match(/^ {6}snapshot: the copy this node keeps$/gm)).to.have.length(3);
    expect(r.stdout).to.contain(
      "every node keeps a copy of this snapshot: each is staged from it and checked there; the repository's copy is not needed",
    );
    for (const node of sandbox.nodes) {
      expect(r.stdout).to.match(new RegExp(`^stage ${node.name}: staged \\S+ from the copy this node keeps`, 'm'));
      expect(r.stdout).to.match(new RegExp(`^restore-kubernetes ${node.name}: restored .*static pod manifests held back`, 'm'));
    }
    expect(r.stdout).to.not.match(/bytes uploaded/);
    await waitHealthy();
    expect(await keys()).to.deep.equal(wanted);
    for (const node of sandbox.nodes) {
      expect(await tree(node.kubernetesDir), `${node.name} /etc/kubernetes`).to.deep.equal(await archiveTree(m, node));
      expect(sandbox.kubelet.running(node.name, 'kube-apiserver'), `${node.name} apiserver`).to.equal(true);
    }
  });

  it('restores one reset node and two alive ones in the same restore, and with --with-kubernetes-dir moves replaced files aside inside /etc/kubernetes', async function () {
    const wanted = await keys();
    const m = await backup();
    const [n1, n2] = sandbox.nodes as [SandboxNode, SandboxNode, SandboxNode];
    await writeFile(join(n1.kubernetesDir, 'admin.conf'), 'rewritten by someone\n');
    await sandbox.etcdctl(['del', '--prefix', '/registry/configmaps/demo/']);
    await sandbox.resetNode(n2.name);
    // An agent started on the reset node runs, and says why it is not ready.
    await sandbox.stopAgent(n2.name);
    await sandbox.startAgents([n2.name], { protectSystem: true });
    const ready = await fetch(`http://${n2.healthAddress}/readyz`);
    expect(ready.status).to.equal(503);
    expect(((await ready.json()) as { error: string }).error).to.match(
      /no etcd member on this node: \S+etcd\.yaml does not exist \(a node reset/,
    );

    const r = await kbur('restore', m.id, '--yes', '--with-kubernetes-dir');
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    const rid = restoreIdFrom(r.stdout);
    expect(r.stdout.match(/REBUILD: no etcd member here/g)).to.have.length(1);
    expect(r.stdout).to.match(/node-2 \(.*\n(.*\n){4} {6}REBUILD/);
    expect(r.stdout).to.match(/^restore-kubernetes node-1: restored .* 1 files replaced/m);
    await waitHealthy();
    expect(await keys()).to.deep.equal(wanted);
    expect(await readFile(join(n1.kubernetesDir, `kbur-aside-${rid}`, 'admin.conf'), 'utf8')).to.equal('rewritten by someone\n');
    for (const node of sandbox.nodes) {
      expect(await tree(node.kubernetesDir), `${node.name} /etc/kubernetes`).to.deep.equal(await archiveTree(m, node));
      expect(sandbox.kubelet.running(node.name, 'kube-apiserver'), `${node.name} apiserver`).to.equal(true);
      await expectNothingBesideKubernetesDir(node);
    }
    expect((await fetch(`http://${n2.healthAddress}/readyz`)).status, 'node-2 ready once rebuilt').to.equal(200);
  });

  it('refuses at preflight, naming the node and touching nothing, a reset node the backup has no archive of', async function () {
    const full = await backup();
    // A backup taken by a kbur.yaml that knew only node-1 and node-2: no archive of node-3.
    const partialConfig = join(root, 'kbur-two-nodes.yaml');
    const config = parse(await readFile(sandbox.coordinatorConfig, 'utf8')) as { nodes: { name: string }[] };
    await writeFile(partialConfig, stringify({ ...config, nodes: config.nodes.filter((n) => n.name !== 'node-3') }), { mode: 0o600 });
    const partial = await backup(partialConfig);
    expect(partial.artifacts.map((a) => a.path)).to.not.include('nodes/node-3/kubernetes.tar');
    const n3 = sandbox.nodes[2]!;
    await sandbox.resetNode(n3.name);
    const before = await Promise.all(sandbox.nodes.map(async (n) => [await tree(n.dir), sandbox.kubelet.pid(n.name, 'etcd')]));

    const r = await kbur('restore', partial.id, '--yes');
    expect(r.code, r.stdout + r.stderr).to.equal(9);
    expect(r.stderr).to.match(/node-3: no etcd member here \(manifests: none; pki: none; .*\): .* backup \S+ has none of node-3/);
    expect(await Promise.all(sandbox.nodes.map(async (n) => [await tree(n.dir), sandbox.kubelet.pid(n.name, 'etcd')]))).to.deep.equal(
      before,
    );

    const back = await kbur('restore', full.id, '--yes');
    expect(back.code, back.stdout + back.stderr).to.equal(0);
    await waitHealthy();
  });

  it('resumes a rebuild after kbur is SIGKILLed right after the step that puts etcd.yaml in place', async function () {
    const wanted = await keys();
    const m = await backup();
    for (const node of sandbox.nodes) await sandbox.resetNode(node.name);
    const crashed = await runKbur(['--config', sandbox.coordinatorConfig, 'restore', m.id, '--yes'], {
      KBUR_FAILPOINT: 'crash-after:start-etcd',
    });
    expect(crashed.code, 'the failpoint ends kbur').to.not.equal(0);
    const rid = restoreIdFrom(crashed.stdout);
    for (const node of sandbox.nodes) {
      expect(await readdir(node.manifestsDir), node.name).to.deep.equal(['etcd.yaml']);
      expect(sandbox.kubelet.running(node.name, 'kube-apiserver'), node.name).to.equal(false);
    }

    const r = await kbur('restore', '--resume', rid, '--yes');
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    expect(r.stdout).to.not.match(/^restore-kubernetes /m);
    await waitHealthy();
    expect(await keys()).to.deep.equal(wanted);
    for (const node of sandbox.nodes) {
      expect(await tree(node.kubernetesDir), node.name).to.deep.equal(await archiveTree(m, node));
      expect(sandbox.kubelet.running(node.name, 'kube-apiserver'), node.name).to.equal(true);
    }
  });

  it('fails the start step saying the kubelet did not start etcd, and --resume goes on once the kubelet is back', async function () {
    const wanted = await keys();
    const m = await backup();
    const n2 = sandbox.nodes[1]!;
    // Waits 10 s, not 60, for etcd to come up on node-2.
    const original = await readFile(n2.agentConfig, 'utf8');
    await sandbox.stopAgent(n2.name);
    await writeFile(
      n2.agentConfig,
      stringify({ ...(parse(original) as object), etcd: { ...(parse(original) as { etcd: object }).etcd, stopTimeout: 10 } }),
    );
    await sandbox.startAgents([n2.name], { protectSystem: true });
    try {
      await sandbox.resetNode(n2.name);
      sandbox.kubelet.pause(n2.name);
      const r = await kbur('restore', m.id, '--yes');
      expect(r.code, r.stdout + r.stderr).to.equal(7);
      const rid = restoreIdFrom(r.stdout);
      expect(r.stdout, r.stdout + r.stderr).to.match(
        /^start-etcd node-2: FAILED: node-2 \(\S+\): etcd\.yaml is in \S+, but 10 s later no etcd runs on \S+: the kubelet did not start it/m,
      );
      expect(r.stderr).to.match(/staticPodPath/);

      await sandbox.kubelet.resume(n2.name);
      const resumed = await kbur('restore', '--resume', rid, '--yes');
      expect(resumed.code, resumed.stdout + resumed.stderr).to.equal(0);
      await waitHealthy();
      expect(await keys()).to.deep.equal(wanted);
    } finally {
      await sandbox.kubelet.resume(n2.name);
      await sandbox.stopAgent(n2.name);
      await writeFile(n2.agentConfig, original);
      await sandbox.startAgents([n2.name], { protectSystem: true });
    }
  });

  it('--nodes node-1 restores a one-member cluster that serves every key; a member then added as kubeadm join adds it syncs', async function () {
    const wanted = await keys();
    const m = await backup();
    const [n1, n2] = sandbox.nodes as [SandboxNode, SandboxNode, SandboxNode];
    for (const node of sandbox.nodes) await sandbox.resetNode(node.name);

    const unknown = await kbur('restore', m.id, '--yes', '--nodes', 'node-1,node-9');
    expect(unknown.code).to.equal(2);
    expect(unknown.stderr).to.contain('--nodes: "node-9" is not a node of kbur.yaml (node-1, node-2, node-3)');
    const resumed = await kbur('restore', '--resume', '20261130T000000Z-0000', '--nodes', 'node-1');
    expect(resumed.code).to.equal(2);
    expect(resumed.stderr).to.contain('--nodes and --to go with a backup id');

    const r = await kbur('restore', m.id, '--yes', '--nodes', 'node-1');
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    expect(r.stdout).to.match(/left out: members node-2, node-3 of the backup: the restored cluster has 1 member \(node-1\)/);
    expect(r.stdout).to.match(/kubeadm join <endpoint> --control-plane .*adds its etcd member/);
    expect(r.stdout).to.not.match(/^\w[\w-]* node-[23]:/m);
    await waitHealthy([n1]);
    const at = (node: SandboxNode) => ({ endpoints: [node.clientUrl] });
    const keysOn = async (node: SandboxNode): Promise<string[]> =>
      (await sandbox.etcdctl(['get', '--prefix', '/registry/', '--keys-only', '--consistency=s'], at(node)))
        .split('\n')
        .filter(Boolean)
        .sort();
    expect(await keysOn(n1)).to.deep.equal(wanted);
    expect(await sandbox.etcdctl(['member', 'list'], at(n1))).to.match(/^[0-9a-f]+, started, node-1, /);
    expect((await sandbox.etcdctl(['member', 'list'], at(n1))).trim().split('\n')).to.have.length(1);
    expect(await readdir(n2.manifestsDir), 'node-2 left alone').to.deep.equal([]);

    // node-2 joins as kubeadm join --control-plane does: its certificates, `etcdctl member add`, then its etcd started with the existing cluster.
    const archive = await mkdtemp(join(root, 'join-'));
    await run('tar', ['-xpf', join(sandbox.repoDir, 'sandbox', 'backups', m.id, 'nodes', n2.name, 'kubernetes.tar'), '-C', archive]);
    await run('cp', ['-a', `${join(archive, 'pki')}/.`, join(n2.kubernetesDir, 'pki')]);
    await sandbox.etcdctl(['member', 'add', n2.name, `--peer-urls=${n2.peerUrl}`], at(n1));
    const pod = parse(await readFile(join(archive, 'manifests', 'etcd.yaml'), 'utf8')) as { spec: { containers: { command: string[] }[] } };
    pod.spec.containers[0]!.command = pod.spec.containers[0]!.command.map((arg) =>
      arg.startsWith('--initial-cluster=')
        ? `--initial-cluster=${n1.name}=${n1.peerUrl},${n2.name}=${n2.peerUrl}`
        : arg === '--initial-cluster-state=new'
          ? '--initial-cluster-state=existing'
          : arg,
    );
    await writeFile(join(n2.manifestsDir, 'etcd.yaml'), stringify(pod), { mode: 0o600 });
    await rm(archive, { recursive: true, force: true });
    await sandbox.kubelet.waitFor(n2.name, 'etcd', 'running');
    await waitHealthy([n1, n2]);
    const deadline = Date.now() + 30_000;
    while ((await keysOn(n2)).join() !== wanted.join() && Date.now() < deadline) await new Promise((res) => setTimeout(res, 200));
    expect(await keysOn(n2), 'node-2 synced').to.deep.equal(wanted);

    // Then every node back in one restore: node-2 is a surviving member now (its /etc/kubernetes put back whole), node-3 is rebuilt.
    const back = await kbur('restore', m.id, '--yes', '--with-kubernetes-dir');
    expect(back.code, back.stdout + back.stderr).to.equal(0);
    expect(back.stdout.match(/REBUILD: no etcd member here/g)).to.have.length(1);
    expect(back.stdout).to.match(/node-3 \(.*\n(.*\n){4} {6}REBUILD/);
    await waitHealthy();
    expect(await keys()).to.deep.equal(wanted);
  });

  it('--rollback of a rebuild leaves every node as reset as it was found, what kbur wrote moved aside', async function () {
    const wanted = await keys();
    const m = await backup();
    for (const node of sandbox.nodes) await sandbox.resetNode(node.name);
    const reset = await Promise.all(sandbox.nodes.map((n) => tree(n.kubernetesDir)));
    const r = await kbur('restore', m.id, '--yes');
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    const rid = restoreIdFrom(r.stdout);
    await waitHealthy();

    const rollback = await kbur('restore', '--rollback', rid, '--yes');
    expect(rollback.code, rollback.stdout + rollback.stderr).to.equal(0);
    expect(rollback.stdout).to.contain('every node was found reset and is left so, without etcd');
    for (const [i, node] of sandbox.nodes.entries()) {
      await expectReset(node);
      expect(await tree(node.kubernetesDir), node.name).to.deep.equal(reset[i]);
      // What the restore had put there is kept aside, whole.
      expect(await tree(join(node.kubernetesDir, `kbur-restored-${rid}`)), node.name).to.deep.include(
        Object.fromEntries(
          Object.entries(await archiveTree(m, node)).filter(
            ([rel, what]) => (rel.startsWith('pki/') || rel.endsWith('.conf')) && !what.endsWith(' dir'),
          ),
        ),
      );
      expect(await readdir(node.dir), node.name).to.include(`etcd-data.kbur-${rid}-restored`);
      expect(sandbox.kubelet.running(node.name, 'kube-apiserver'), node.name).to.equal(false);
    }

    // And a restore still brings it all back.
    const again = await kbur('restore', m.id, '--yes');
    expect(again.code, again.stdout + again.stderr).to.equal(0);
    await waitHealthy();
    expect(await keys()).to.deep.equal(wanted);
  });

  // Last: it moves every node to its new address for good.
  it('--to brings the control plane back on other machines at new addresses: certificates issued again from the backed-up CAs, no old address left', async function () {
    const wanted = await keys();
    const m = await backup();
    const before = sandbox.nodes.map((n) => ({ name: n.name, ip: n.ip }));
    const network = before[0]!.ip.replace(/\.(\d+)\.\d+$/, (_, x: string) => `.${Number(x) + 10}`);
    // The machines are gone; others come up at new addresses with only the kubelet and kbur-agent.
    for (const node of sandbox.nodes) await sandbox.resetNode(node.name);
    for (const node of sandbox.nodes) await sandbox.stopAgent(node.name);
    for (const [i, node] of sandbox.nodes.entries()) await sandbox.moveNode(node.name, `${network}.1${i + 1}`);
    await sandbox.startAgents(undefined, { protectSystem: true });
    const toFile = join(root, 'to.yaml');
    await writeFile(
      toFile,
      stringify({ nodes: sandbox.nodes.map((n, i) => ({ from: before[i]!.name, address: n.ip, agent: n.agentAddress })) }),
    );

    const badFile = join(root, 'to-bad.yaml');
    await writeFile(badFile, stringify({ nodes: [{ from: 'node-1', address: 'node-1.example', agent: sandbox.nodes[0]!.agentAddress }] }));
    const bad = await kbur('restore', m.id, '--yes', '--to', badFile);
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.match(/nodes\.0\.address.*expected an IP address/);

    const r = await kbur('restore', m.id, '--yes', '--to', toFile);
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    expect(r.stdout).to.contain(`new addresses (--to): ${before.map((b, i) => `${b.ip} -> ${sandbox.nodes[i]!.ip}`).join(', ')}`);
    for (const cert of ['pki/apiserver.crt', 'pki/etcd/peer.crt', 'pki/etcd/server.crt'])
      expect(r.stdout.split(`--to: issue again (new address in its subjectAltName): ${cert}\n`)).to.have.length(4);
    for (const file of ['admin.conf', 'kubelet.conf', 'manifests/etcd.yaml', 'manifests/kube-apiserver.yaml'])
      expect(r.stdout.split(`--to: rewrite: ${file}\n`)).to.have.length(4);
    await waitHealthy();
    expect(await keys()).to.deep.equal(wanted);
    const members = await sandbox.etcdctl(['member', 'list']);
    for (const node of sandbox.nodes) expect(members).to.contain(`${node.name}, ${node.peerUrl}, ${node.clientUrl}`);

    for (const [i, node] of sandbox.nodes.entries()) {
      const pki = join(node.kubernetesDir, 'pki');
      for (const [ca, cert] of [
        ['ca.crt', 'apiserver.crt'],
        ['etcd/ca.crt', 'etcd/server.crt'],
        ['etcd/ca.crt', 'etcd/peer.crt'],
      ] as const) {
        const { stdout } = await run('openssl', ['verify', '-CAfile', join(pki, ca), join(pki, cert)]);
        expect(stdout.trim(), `${node.name} ${cert}`).to.equal(`${join(pki, cert)}: OK`);
        const { stdout: text } = await run('openssl', ['x509', '-in', join(pki, cert), '-noout', '-ext', 'subjectAltName']);
        expect(text, `${node.name} ${cert}`).to.contain(`IP Address:${node.ip}`);
        expect(text, `${node.name} ${cert}`).to.not.match(new RegExp(`IP Address:${before[i]!.ip.replace(/\./g, '\\.')}(\\D|$)`));
      }
      // No file of the restored /etc/kubernetes names an old node address (kbur's own folders aside).
      for (const b of before) {
        const grep = await run('grep', ['-rlF', '--exclude-dir=kbur-*', b.ip, node.kubernetesDir]).catch(
          (err: { code: number; stdout: string }) => err,
        );
        expect(grep.stdout, `${node.name}: files naming ${b.ip}`).to.equal('');
      }
      expect(sandbox.kubelet.running(node.name, 'kube-apiserver'), node.name).to.equal(true);
    }
  });
});

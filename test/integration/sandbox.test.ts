import { expect } from 'chai';
import { once } from 'node:events';
import { mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { createSandbox, waitForEtcdHealthy, waitForPortFree, type Sandbox } from '../sandbox/cluster.js';
import type { ContainerEvent } from '../sandbox/kubelet.js';

describe('sandbox', function () {
  this.timeout(120_000);
  let root: string;
  let sandbox: Sandbox | undefined;

  before(async function () {
    root = await mkdtemp(join(tmpdir(), 'kbur-sandbox-test-'));
    sandbox = await createSandbox({ root });
  });

  after(async function () {
    await sandbox?.stop();
    await rm(root, { recursive: true, force: true });
  });

  function sb(): Sandbox {
    if (!sandbox) throw new Error('the sandbox did not start');
    return sandbox;
  }

  /** The pid of the next start of that container. */
  function nextStart(node: string, container: string): Promise<number> {
    return new Promise((resolve) => {
      const onStart = (e: ContainerEvent): void => {
        if (e.node !== node || e.container !== container) return;
        sb().kubelet.off('started', onStart);
        resolve(e.pid);
      };
      sb().kubelet.on('started', onStart);
    });
  }

  it('runs three healthy etcd members that all know each other', async function () {
    const health = await sb().etcdctl(['endpoint', 'health', '-w', 'json']);
    const endpoints = JSON.parse(health) as { endpoint: string; health: boolean }[];
    expect(endpoints.map((e) => [e.endpoint, e.health])).to.have.deep.members([...sb().nodes.map((n) => [n.clientUrl, true])]);
    const members = JSON.parse(await sb().etcdctl(['member', 'list', '-w', 'json'])) as {
      members: { name: string; peerURLs: string[]; clientURLs: string[] }[];
    };
    expect(members.members.map((m) => [m.name, m.peerURLs, m.clientURLs])).to.have.deep.members([
      ...sb().nodes.map((n) => [n.name, [n.peerUrl], [n.clientUrl]]),
    ]);
  });

  it('lays out kubeadm-like nodes with private keys, configs and data dirs', async function () {
    const node = sb().nodes[1];
    const mode = async (path: string): Promise<number> => (await stat(path)).mode & 0o777;
    expect(await mode(join(node.kubernetesDir, 'pki', 'etcd', 'peer.key'))).to.equal(0o600);
    expect(await mode(join(node.kubernetesDir, 'pki', 'etcd', 'peer.crt'))).to.equal(0o644);
    expect(await mode(join(node.kubernetesDir, 'pki'))).to.equal(0o700);
    expect(await mode(join(node.kubernetesDir, 'admin.conf'))).to.equal(0o600);
    expect(await mode(join(node.manifestsDir, 'etcd.yaml'))).to.equal(0o600);
    expect(await mode(node.dataDir)).to.equal(0o700);
    expect(await mode(sb().repoDir)).to.equal(0o700);
    expect(await mode(sb().kburPki.cert('rogue-admin').key)).to.equal(0o600);
  });

  it('serves the seeded objects from every member, each read locally', async function () {
    expect(sb().seededKeys).to.be.greaterThan(20);
    for (const node of sb().nodes) {
      const out = await sb().etcdctl(['get', '/registry/', '--prefix', '--keys-only', '--consistency=s'], {
        endpoints: [node.clientUrl],
      });
      const keys = out.split('\n').filter((line) => line !== '');
      expect(keys, node.name).to.have.length(sb().seededKeys);
      expect(keys).to.include('/registry/configmaps/kube-system/kubeadm-config');
      expect(keys).to.include('/registry/configmaps/demo/app-config-20');
    }
    const key = '/registry/configmaps/kube-system/kubeadm-config';
    const kubeadm = await sb().etcdctl(['get', key, '--print-value-only']);
    const configMap = JSON.parse(kubeadm) as { data: { ClusterConfiguration: string } };
    expect(configMap.data.ClusterConfiguration).to.contain('kind: ClusterConfiguration');
  });

  it('stops a member when its manifest leaves manifests/, and rejoins it when the manifest is back', async function () {
    const node = sb().nodes[2];
    const manifest = join(node.manifestsDir, 'etcd.yaml');
    const aside = join(node.dir, 'etcd.yaml.aside');
    await rename(manifest, aside);
    await sb().kubelet.waitFor(node.name, 'etcd', 'stopped');
    await waitForPortFree(node.ip, 2379, 5_000);
    const others = sb()
      .nodes.filter((n) => n !== node)
      .map((n) => n.clientUrl);
    await waitForEtcdHealthy(sb(), others, 10_000);

    await rename(aside, manifest);
    await sb().kubelet.waitFor(node.name, 'etcd', 'running');
    await waitForEtcdHealthy(sb(), [node.clientUrl], 30_000);
    const out = await sb().etcdctl(['get', '/registry/', '--prefix', '--keys-only', '--consistency=s'], {
      endpoints: [node.clientUrl],
    });
    expect(out.split('\n').filter((line) => line !== '')).to.have.length(sb().seededKeys);
  });

  it('restarts etcd after it is killed, like the kubelet does', async function () {
    const node = sb().nodes[0];
    const before = sb().kubelet.pid(node.name, 'etcd');
    expect(before).to.be.a('number');
    expect(sb().kubelet.kill(node.name, 'etcd', 'SIGKILL')).to.equal(true);
    await sb().kubelet.waitFor(node.name, 'etcd', 'stopped');
    expect(sb().kubelet.running(node.name, 'etcd')).to.equal(false);
    await sb().kubelet.waitFor(node.name, 'etcd', 'running', 5_000);
    expect(sb().kubelet.pid(node.name, 'etcd')).to.be.a('number').and.not.equal(before);
    await waitForEtcdHealthy(
      sb(),
      sb().nodes.map((n) => n.clientUrl),
      30_000,
    );
  });

  it('restarts a static pod whose manifest is replaced by a changed one', async function () {
    const node = sb().nodes[1];
    const manifest = join(node.manifestsDir, 'kube-scheduler.yaml');
    const before = sb().kubelet.pid(node.name, 'kube-scheduler');
    const pod = parse(await readFile(manifest, 'utf8')) as { spec: { containers: { command: string[] }[] } };
    pod.spec.containers[0].command = ['sleep', '86400'];
    // Written as kbur writes files: a temporary name, then a rename over the old one.
    await writeFile(`${manifest}.part`, stringify(pod), { mode: 0o600 });
    const restarted = nextStart(node.name, 'kube-scheduler');
    await rename(`${manifest}.part`, manifest);
    const pid = await restarted;
    expect(pid).to.not.equal(before);
    expect(sb().kubelet.pid(node.name, 'kube-scheduler')).to.equal(pid);
  });

  it('restarts a crashing container with a doubling backoff', async function () {
    const node = sb().nodes[0];
    const manifest = join(node.manifestsDir, 'crasher.yaml');
    const pod = { apiVersion: 'v1', kind: 'Pod', spec: { containers: [{ name: 'crasher', command: ['false'] }] } };
    const starts: number[] = [];
    const onStart = (e: ContainerEvent): void => {
      if (e.container === 'crasher') starts.push(Date.now());
    };
    sb().kubelet.on('started', onStart);
    try {
      await writeFile(manifest, stringify(pod));
      while (starts.length < 3) await once(sb().kubelet, 'started');
      await rm(manifest);
      await sb().kubelet.waitFor(node.name, 'crasher', 'stopped');
    } finally {
      sb().kubelet.off('started', onStart);
    }
    expect(starts[1] - starts[0]).to.be.within(900, 1_900);
    expect(starts[2] - starts[1]).to.be.within(1_900, 2_900);
  });

  it('leaves the placeholder control-plane containers running', function () {
    for (const node of sb().nodes) {
      for (const c of ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler']) {
        expect(sb().kubelet.running(node.name, c), `${c} on ${node.name}`).to.equal(true);
      }
    }
  });
});

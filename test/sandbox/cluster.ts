// A kubeadm-like three-node control plane on loopback: real etcd members over TLS, started by the
// kubelet stand-in from static pod manifests, plus kbur's PKI and configs. Used by the integration
// tests, the demo and the benchmark. The caller owns `root`; nothing here deletes it.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { get } from 'node:http';
import { connect } from 'node:net';
import { dirname, isAbsolute, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Etcd3 } from 'etcd3';
import { parse, stringify } from 'yaml';
import { Kubelet } from './kubelet.js';
import { createKburPki, createKubernetesPki, issueAgentCert, issuePem, pair, type KeyPair } from './pki.js';
import { AGENT_NODE_FLAGS } from '../../shared/node-flags.js';

export interface SandboxOptions {
  /** Absolute; must exist or be creatable. */
  root: string;
  /** Default 3, at most 9 (127.0.0.11..19). */
  nodes?: number;
  /** etcd's --quota-backend-bytes; default 2 GiB. */
  quotaBackendBytes?: number;
  /** Write sample Kubernetes objects once etcd is healthy; default true. */
  seed?: boolean;
  /**
   * The first three octets of the nodes' addresses: node N is <network>.1N. Default: 127.0.0,
   * or $KBUR_SANDBOX_NETWORK, so that two sandboxes (a test run and a benchmark) can coexist.
   */
  network?: string;
  /**
   * How kbur-agent is run: a command and its environment, e.g. the installed single executable
   * with a PATH that has no node. Default: this Node with AGENT_NODE_FLAGS and dist/agent/bin.js.
   */
  agent?: { command: string[]; env?: NodeJS.ProcessEnv };
}

export interface SandboxNode {
  name: string;
  ip: string;
  dir: string;
  kubernetesDir: string;
  manifestsDir: string;
  dataDir: string;
  stateDir: string;
  agentConfig: string;
  clientUrl: string;
  peerUrl: string;
  agentAddress: string;
  healthAddress: string;
}

export type KburIdentity = 'kbur-admin' | 'kbur-operator' | 'monitoring' | 'stranger' | 'rogue-admin' | `agent-${string}`;

export interface Sandbox {
  root: string;
  nodes: SandboxNode[];
  coordinatorConfig: string;
  repoDir: string;
  kubelet: Kubelet;
  kburPki: { dir: string; ca: string; cert(name: KburIdentity): KeyPair };
  /** Runs etcdctl (API v3) over TLS with node-1's healthcheck-client cert; default endpoints: every member. */
  etcdctl(args: string[], opts?: { endpoints?: string[] }): Promise<string>;
  /** How many keys the seed wrote (0 without seed). */
  seededKeys: number;
  /**
   * Starts `dist/agent/bin.js` on the given nodes (default all) and waits for their /healthz.
   * `protectSystem`: under the read-only mounts of the agent's unit (ProtectSystem=full makes /etc
   * read-only, ReadWritePaths=/etc/kubernetes keeps that writable): the node's etc/ read-only, its
   * kubernetes dir writable, in a mount namespace of the agent's own (unshare, as root).
   */
  startAgents(nodes?: string[], opts?: { protectSystem?: boolean }): Promise<void>;
  stopAgent(node: string, signal?: NodeJS.Signals): Promise<void>;
  /** The pid of a node's running agent. */
  agentPid(node: string): number | undefined;
  /**
   * A disaster on one node: its etcd is stopped the kubelet's way (manifest out), its data dir
   * removed, and the manifest put back, so the member comes back with nothing.
   */
  wipeEtcdData(node: string): Promise<void>;
  /**
   * The node as `kubeadm reset` leaves it: its static pods stopped (manifests removed), the
   * contents of manifests/, pki/ and etcd's data dir deleted, kubeadm's kubeconfigs deleted. Its
   * agent (and the kubelet) keep running.
   */
  resetNode(node: string): Promise<void>;
  /**
   * The node's machine comes back at another address (its agent stopped first): the node's
   * addresses, its agent's config and its agent certificate (from kbur's CA) change; its
   * /etc/kubernetes is left as it is (kbur restore --to fits it).
   */
  moveNode(node: string, ip: string): Promise<void>;
  /** Stops the agents and the kubelet (so etcd), and waits for every process to exit. */
  stop(): Promise<void>;
}

const ETCD_READY_TIMEOUT_MS = 60_000;
const AGENT_READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
const POLL_MS = 200;
const DEFAULT_QUOTA = 2 * 1024 ** 3;
const ETCD_IMAGE = 'registry.k8s.io/etcd:3.5.15-0';
const KUBERNETES_VERSION = 'v1.30.4';
const CLUSTER_NAME = 'sandbox';

/** What of a node follows from its address. */
function addresses(ip: string): Pick<SandboxNode, 'ip' | 'clientUrl' | 'peerUrl' | 'agentAddress' | 'healthAddress'> {
  return { ip, clientUrl: `https://${ip}:2379`, peerUrl: `https://${ip}:2380`, agentAddress: `${ip}:7443`, healthAddress: `${ip}:9443` };
}

function sandboxNode(root: string, index: number, network: string): SandboxNode {
  const name = `node-${index}`;
  const ip = `${network}.1${index}`;
  const dir = join(root, 'nodes', name);
  // Under an etc/ of its own, as /etc/kubernetes is: the agent's unit makes /etc read-only (see startAgents' protectSystem).
  const kubernetesDir = join(dir, 'etc', 'kubernetes');
  return {
    name,
    ip,
    dir,
    kubernetesDir,
    manifestsDir: join(kubernetesDir, 'manifests'),
    dataDir: join(dir, 'etcd-data'),
    stateDir: join(dir, 'state'),
    agentConfig: join(dir, 'agent.yaml'),
    clientUrl: `https://${ip}:2379`,
    peerUrl: `https://${ip}:2380`,
    agentAddress: `${ip}:7443`,
    healthAddress: `${ip}:9443`,
  };
}

async function makeDir(path: string, mode: number): Promise<void> {
  await mkdir(path, { recursive: true, mode });
}

function writePrivate(path: string, text: string): Promise<void> {
  return writeFile(path, text, { mode: 0o600 });
}

// ---------------------------------------------------------------------------------------------
// Files of a kubeadm node

function etcdManifest(node: SandboxNode, all: SandboxNode[], token: string, quota: number): unknown {
  const certs = join(node.kubernetesDir, 'pki', 'etcd');
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      annotations: { 'kubeadm.kubernetes.io/etcd.advertise-client-urls': node.clientUrl },
      labels: { component: 'etcd', tier: 'control-plane' },
      name: `etcd-${node.name}`,
      namespace: 'kube-system',
    },
    spec: {
      containers: [
        {
          command: [
            'etcd',
            `--name=${node.name}`,
            `--data-dir=${node.dataDir}`,
            `--listen-client-urls=${node.clientUrl}`,
            `--advertise-client-urls=${node.clientUrl}`,
            `--listen-peer-urls=${node.peerUrl}`,
            `--initial-advertise-peer-urls=${node.peerUrl}`,
            `--initial-cluster=${all.map((n) => `${n.name}=${n.peerUrl}`).join(',')}`,
            '--initial-cluster-state=new',
            `--initial-cluster-token=${token}`,
            '--client-cert-auth=true',
            '--peer-client-cert-auth=true',
            `--cert-file=${join(certs, 'server.crt')}`,
            `--key-file=${join(certs, 'server.key')}`,
            `--trusted-ca-file=${join(certs, 'ca.crt')}`,
            `--peer-cert-file=${join(certs, 'peer.crt')}`,
            `--peer-key-file=${join(certs, 'peer.key')}`,
            `--peer-trusted-ca-file=${join(certs, 'ca.crt')}`,
            '--snapshot-count=10000',
            `--quota-backend-bytes=${quota}`,
            `--listen-metrics-urls=http://${node.ip}:2381`,
            '--logger=zap',
            '--log-outputs=stderr',
          ],
          image: ETCD_IMAGE,
          imagePullPolicy: 'IfNotPresent',
          name: 'etcd',
          resources: { requests: { cpu: '100m', memory: '100Mi' } },
          volumeMounts: [
            { mountPath: node.dataDir, name: 'etcd-data' },
            { mountPath: certs, name: 'etcd-certs' },
          ],
        },
      ],
      hostNetwork: true,
      priority: 2000001000,
      priorityClassName: 'system-node-critical',
      securityContext: { seccompProfile: { type: 'RuntimeDefault' } },
      volumes: [
        { hostPath: { path: certs, type: 'DirectoryOrCreate' }, name: 'etcd-certs' },
        { hostPath: { path: node.dataDir, type: 'DirectoryOrCreate' }, name: 'etcd-data' },
      ],
    },
    status: {},
  };
}

/** kube-apiserver & co. run as `sleep infinity`: the sandbox only needs them to exist and be stoppable. */
function placeholderManifest(node: SandboxNode, component: string): unknown {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      ...(component === 'kube-apiserver'
        ? { annotations: { 'kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint': `${node.ip}:6443` } }
        : {}),
      labels: { component, tier: 'control-plane' },
      name: `${component}-${node.name}`,
      namespace: 'kube-system',
    },
    spec: {
      containers: [
        {
          command: ['sleep', 'infinity'],
          image: `registry.k8s.io/${component}:${KUBERNETES_VERSION}`,
          imagePullPolicy: 'IfNotPresent',
          name: component,
          volumeMounts: [{ mountPath: join(node.kubernetesDir, 'pki'), name: 'k8s-certs', readOnly: true }],
        },
      ],
      hostNetwork: true,
      priorityClassName: 'system-node-critical',
      volumes: [{ hostPath: { path: join(node.kubernetesDir, 'pki'), type: 'DirectoryOrCreate' }, name: 'k8s-certs' }],
    },
    status: {},
  };
}

function clusterConfiguration(first: SandboxNode): Record<string, unknown> {
  return {
    apiVersion: 'kubeadm.k8s.io/v1beta3',
    kind: 'ClusterConfiguration',
    clusterName: CLUSTER_NAME,
    kubernetesVersion: KUBERNETES_VERSION,
    controlPlaneEndpoint: `${first.ip}:6443`,
    certificatesDir: join(first.kubernetesDir, 'pki'),
    imageRepository: 'registry.k8s.io',
    etcd: { local: { dataDir: first.dataDir } },
    networking: { dnsDomain: 'cluster.local', podSubnet: '10.244.0.0/16', serviceSubnet: '10.96.0.0/12' },
    apiServer: { timeoutForControlPlane: '4m0s' },
    controllerManager: {},
    scheduler: {},
    dns: {},
  };
}

function initConfiguration(first: SandboxNode): Record<string, unknown> {
  return {
    apiVersion: 'kubeadm.k8s.io/v1beta3',
    kind: 'InitConfiguration',
    localAPIEndpoint: { advertiseAddress: first.ip, bindPort: 6443 },
    nodeRegistration: {
      name: first.name,
      criSocket: 'unix:///var/run/containerd/containerd.sock',
      taints: [{ effect: 'NoSchedule', key: 'node-role.kubernetes.io/control-plane' }],
    },
  };
}

interface KubeconfigSpec {
  file: string;
  user: string;
  groups?: string[];
  server: string;
}

function kubeconfigSpecs(node: SandboxNode, endpoint: string): KubeconfigSpec[] {
  const local = `https://${node.ip}:6443`;
  return [
    { file: 'admin.conf', user: 'kubernetes-admin', groups: ['kubeadm:cluster-admins'], server: endpoint },
    { file: 'super-admin.conf', user: 'kubernetes-super-admin', groups: ['system:masters'], server: endpoint },
    { file: 'controller-manager.conf', user: 'system:kube-controller-manager', server: local },
    { file: 'scheduler.conf', user: 'system:kube-scheduler', server: local },
    { file: 'kubelet.conf', user: `system:node:${node.name}`, groups: ['system:nodes'], server: endpoint },
  ];
}

async function writeKubeconfigs(node: SandboxNode, endpoint: string): Promise<void> {
  const ca = pair(join(node.kubernetesDir, 'pki'), 'ca');
  const caPem = await readFile(ca.cert);
  const b64 = (text: string | Buffer): string => Buffer.from(text).toString('base64');
  await Promise.all(
    kubeconfigSpecs(node, endpoint).map(async (spec) => {
      const creds = await issuePem({ cn: spec.user, o: spec.groups, issuer: ca, usages: ['clientAuth'] });
      const context = `${spec.user}@${CLUSTER_NAME}`;
      const config = {
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ cluster: { 'certificate-authority-data': b64(caPem), server: spec.server }, name: CLUSTER_NAME }],
        contexts: [{ context: { cluster: CLUSTER_NAME, user: spec.user }, name: context }],
        'current-context': context,
        preferences: {},
        users: [
          {
            name: spec.user,
            user: { 'client-certificate-data': b64(creds.cert), 'client-key-data': b64(creds.key) },
          },
        ],
      };
      await writePrivate(join(node.kubernetesDir, spec.file), stringify(config));
    }),
  );
}

async function writeNodeFiles(node: SandboxNode, all: SandboxNode[], token: string, quota: number, root: string): Promise<void> {
  const first = all[0];
  const manifests: [string, unknown][] = [
    ['etcd.yaml', etcdManifest(node, all, token, quota)],
    ['kube-apiserver.yaml', placeholderManifest(node, 'kube-apiserver')],
    ['kube-controller-manager.yaml', placeholderManifest(node, 'kube-controller-manager')],
    ['kube-scheduler.yaml', placeholderManifest(node, 'kube-scheduler')],
  ];
  const kburPki = join(root, 'kbur-pki');
  const agentConfig = {
    node: node.name,
    listen: node.agentAddress,
    tls: {
      ca: join(kburPki, 'ca.crt'),
      cert: join(kburPki, `agent-${node.name}.crt`),
      key: join(kburPki, `agent-${node.name}.key`),
    },
    clients: { 'kbur-admin': 'admin', 'kbur-operator': 'operator', monitoring: 'monitor' },
    kubernetesDir: node.kubernetesDir,
    etcd: { manifest: join(node.manifestsDir, 'etcd.yaml') },
    stateDir: node.stateDir,
    health: node.healthAddress,
  };
  await Promise.all([
    writeKubeconfigs(node, `https://${first.ip}:6443`),
    ...manifests.map(([file, doc]) => writePrivate(join(node.manifestsDir, file), stringify(doc))),
    writePrivate(node.agentConfig, stringify(agentConfig)),
    node === first
      ? writePrivate(
          join(node.kubernetesDir, 'kubeadm-config.yaml'),
          `${stringify(initConfiguration(first))}---\n${stringify(clusterConfiguration(first))}`,
        )
      : Promise.resolve(),
  ]);
}

function coordinatorConfig(root: string, nodes: SandboxNode[]): unknown {
  const kburPki = join(root, 'kbur-pki');
  return {
    cluster: CLUSTER_NAME,
    tls: {
      ca: join(kburPki, 'ca.crt'),
      cert: join(kburPki, 'kbur-admin.crt'),
      key: join(kburPki, 'kbur-admin.key'),
    },
    nodes: nodes.map((n) => ({ name: n.name, agent: n.agentAddress })),
    repository: { type: 'local', path: join(root, 'repo') },
    // Scratch etcds (verify --deep, ...) inside the sandbox, where its tests look for leftovers.
    scratch: { dir: join(root, 'scratch') },
    // The cluster's etcd, for restore --namespace and diff, with the apiserver's own client pair.
    etcd: {
      endpoints: nodes.map((n) => n.clientUrl),
      ca: join(nodes[0]!.kubernetesDir, 'pki', 'etcd', 'ca.crt'),
      cert: join(nodes[0]!.kubernetesDir, 'pki', 'apiserver-etcd-client.crt'),
      key: join(nodes[0]!.kubernetesDir, 'pki', 'apiserver-etcd-client.key'),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Sample objects, stored as the apiserver stores them with the JSON media type

function meta(name: string, namespace?: string): Record<string, unknown> {
  return {
    name,
    ...(namespace ? { namespace } : {}),
    uid: randomUUID(),
    resourceVersion: '1',
    creationTimestamp: '2024-01-01T00:00:00Z',
  };
}

function sampleObjects(first: SandboxNode): Map<string, string> {
  const objects = new Map<string, unknown>();
  for (const ns of ['default', 'kube-system', 'demo']) {
    objects.set(`/registry/namespaces/${ns}`, {
      kind: 'Namespace',
      apiVersion: 'v1',
      metadata: meta(ns),
      spec: { finalizers: ['kubernetes'] },
      status: { phase: 'Active' },
    });
  }
  objects.set('/registry/configmaps/kube-system/kubeadm-config', {
    kind: 'ConfigMap',
    apiVersion: 'v1',
    metadata: meta('kubeadm-config', 'kube-system'),
    data: { ClusterConfiguration: stringify(clusterConfiguration(first)) },
  });
  for (let i = 1; i <= 20; i++) {
    objects.set(`/registry/configmaps/demo/app-config-${i}`, {
      kind: 'ConfigMap',
      apiVersion: 'v1',
      metadata: meta(`app-config-${i}`, 'demo'),
      data: { 'app.properties': `instance=${i}\nlog.level=info\nfeature.x=${i % 2 === 0}\n` },
    });
  }
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const secrets: Record<string, Record<string, string>> = {
    'db-credentials': { username: b64('app'), password: b64('sandbox-only-password') },
    'api-token': { token: b64('sandbox-only-token') },
    'web-tls': {
      'tls.crt': b64('-----BEGIN CERTIFICATE-----\n...'),
      'tls.key': b64('-----BEGIN PRIVATE KEY-----\n...'),
    },
  };
  for (const [name, data] of Object.entries(secrets)) {
    objects.set(`/registry/secrets/demo/${name}`, {
      kind: 'Secret',
      apiVersion: 'v1',
      metadata: meta(name, 'demo'),
      type: name === 'web-tls' ? 'kubernetes.io/tls' : 'Opaque',
      data,
    });
  }
  objects.set('/registry/deployments/demo/web', {
    kind: 'Deployment',
    apiVersion: 'apps/v1',
    metadata: meta('web', 'demo'),
    spec: {
      replicas: 2,
      selector: { matchLabels: { app: 'web' } },
      template: {
        metadata: { labels: { app: 'web' } },
        spec: {
          containers: [{ name: 'web', image: 'nginx:1.27', envFrom: [{ configMapRef: { name: 'app-config-1' } }] }],
        },
      },
    },
  });
  return new Map([...objects].map(([key, value]) => [key, JSON.stringify(value)]));
}

/** Writes the sample objects through one TLS client; returns how many keys it wrote. */
async function seed(first: SandboxNode, endpoints: string[]): Promise<number> {
  const certs = join(first.kubernetesDir, 'pki', 'etcd');
  const [rootCertificate, certChain, privateKey] = await Promise.all(
    ['ca.crt', 'healthcheck-client.crt', 'healthcheck-client.key'].map((f) => readFile(join(certs, f))),
  );
  const client = new Etcd3({
    hosts: endpoints,
    credentials: { rootCertificate, certChain, privateKey },
    // grpc-js would put the IP address in TLS SNI, which Node deprecates (DEP0123); the members'
    // certificates all carry DNS:localhost.
    grpcOptions: { 'grpc.ssl_target_name_override': 'localhost' },
  });
  try {
    const objects = sampleObjects(first);
    await Promise.all([...objects].map(([key, value]) => client.put(key).value(value)));
    return objects.size;
  } finally {
    client.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Processes, ports and logs

function tail(file: string, lines = 25): string {
  try {
    const text = readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
    return `--- ${file}\n${text}`;
  } catch {
    return `--- ${file}: no log`;
  }
}

/** True if something accepts TCP connections on host:port. */
function isListening(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.setTimeout(1_000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export async function waitForPortFree(host: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (await isListening(host, port)) {
    if (Date.now() > deadline) throw new Error(`${host}:${port} is still listening after ${timeoutMs} ms`);
    await sleep(POLL_MS);
  }
}

/** Waits until every endpoint (default: every member's) answers `etcdctl endpoint health` (a quorum read) over TLS. */
export async function waitForEtcdHealthy(
  sandbox: Sandbox,
  endpoints: string[] = sandbox.nodes.map((n) => n.clientUrl),
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await sandbox.etcdctl(['endpoint', 'health', '--dial-timeout=1s', '--command-timeout=2s'], { endpoints });
      return;
    } catch (err) {
      if (Date.now() > deadline) {
        const logs = sandbox.nodes
          .filter((n) => endpoints.includes(n.clientUrl))
          .map((n) => tail(join(sandbox.root, 'logs', `${n.name}-etcd.log`)));
        const reason = err instanceof Error ? err.message : String(err);
        const message = `etcd is not healthy at ${endpoints.join(', ')} after ${timeoutMs} ms: ${reason}`;
        throw new Error(`${message}\n${logs.join('\n')}`, { cause: err });
      }
    }
    await sleep(POLL_MS);
  }
}

function httpStatus(url: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = get(url, { timeout: 1_000 }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(undefined));
  });
}

/** The repository root: the nearest parent with kbur's package.json (works from test/ and dist/test/). */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (dirname(dir) !== dir) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: unknown }).name === 'kbur') return dir;
    dir = dirname(dir);
  }
  throw new Error(`no kbur package.json above ${fileURLToPath(import.meta.url)}`);
}

interface AgentProcess {
  child: ChildProcess;
  exited: Promise<void>;
}

function exitOf(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('close', () => resolve());
  });
}

async function terminate(child: ChildProcess, exited: Promise<void>, signal: NodeJS.Signals): Promise<void> {
  child.kill(signal);
  const killer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(killer);
}

// ---------------------------------------------------------------------------------------------

class LocalSandbox implements Sandbox {
  readonly coordinatorConfig: string;
  agentCommand: SandboxOptions['agent'];
  readonly repoDir: string;
  readonly kburPki: Sandbox['kburPki'];
  readonly kubelet: Kubelet;
  seededKeys = 0;
  private readonly logDir: string;
  private readonly agents = new Map<string, AgentProcess>();

  constructor(
    readonly root: string,
    readonly nodes: SandboxNode[],
  ) {
    this.coordinatorConfig = join(root, 'kbur.yaml');
    this.repoDir = join(root, 'repo');
    this.logDir = join(root, 'logs');
    const pkiDir = join(root, 'kbur-pki');
    this.kburPki = { dir: pkiDir, ca: join(pkiDir, 'ca.crt'), cert: (name) => pair(pkiDir, name) };
    this.kubelet = new Kubelet({ nodes, logDir: this.logDir, stopTimeoutMs: STOP_TIMEOUT_MS });
  }

  etcdctl(args: string[], opts: { endpoints?: string[] } = {}): Promise<string> {
    const certs = join(this.nodes[0].kubernetesDir, 'pki', 'etcd');
    const endpoints = opts.endpoints ?? this.nodes.map((n) => n.clientUrl);
    const argv = [
      `--endpoints=${endpoints.join(',')}`,
      `--cacert=${join(certs, 'ca.crt')}`,
      `--cert=${join(certs, 'healthcheck-client.crt')}`,
      `--key=${join(certs, 'healthcheck-client.key')}`,
      ...args,
    ];
    // Only PATH is passed on: ETCDCTL_* variables of the caller's shell would override these flags.
    const env = { ETCDCTL_API: '3', PATH: process.env.PATH ?? '/usr/bin:/bin' };
    return new Promise((resolve, reject) => {
      execFile('etcdctl', argv, { env, maxBuffer: 256 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`etcdctl ${args.join(' ')} failed: ${stderr.trim() || err.message}`, { cause: err }));
        else resolve(stdout);
      });
    });
  }

  async startAgents(names: string[] = this.nodes.map((n) => n.name), opts: { protectSystem?: boolean } = {}): Promise<void> {
    const bin = join(repoRoot(), 'dist', 'agent', 'bin.js');
    const agent = this.agentCommand ?? { command: [process.execPath, ...AGENT_NODE_FLAGS, bin] };
    if (!existsSync(agent.command[0] === process.execPath ? bin : agent.command[0]!)) {
      throw new Error(`${agent.command.join(' ')}: not found (build the project first: npx tsc -p .)`);
    }
    await Promise.all(names.map((name) => this.startAgent(this.node(name), agent, opts.protectSystem ?? false)));
  }

  private async startAgent(
    node: SandboxNode,
    agentCommand: { command: string[]; env?: NodeJS.ProcessEnv },
    protectSystem: boolean,
  ): Promise<void> {
    if (this.agents.has(node.name)) return;
    const logFile = join(this.logDir, `agent-${node.name}.log`);
    const fd = openSync(logFile, 'a');
    let child: ChildProcess;
    const argv = [...agentCommand.command, '--config', node.agentConfig];
    // unshare execs the shell, which execs node: the child's pid is the agent's.
    const mounts =
      'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && mount --bind "$2" "$2" && mount -o remount,bind,rw "$2" && shift 2 && exec "$@"';
    const [file, ...args] = protectSystem
      ? [
          'unshare',
          '--mount',
          '--propagation',
          'private',
          'sh',
          '-c',
          mounts,
          'sh',
          dirname(node.kubernetesDir),
          node.kubernetesDir,
          ...argv,
        ]
      : argv;
    try {
      child = spawn(file!, args, { stdio: ['ignore', fd, fd], env: agentCommand.env ?? process.env });
    } finally {
      closeSync(fd);
    }
    const agent = { child, exited: exitOf(child) };
    child.once('error', () => {});
    this.agents.set(node.name, agent);
    let gone = false;
    void agent.exited.then(() => {
      gone = true;
      if (this.agents.get(node.name) === agent) this.agents.delete(node.name);
    });
    const url = `http://${node.healthAddress}/healthz`;
    const deadline = Date.now() + AGENT_READY_TIMEOUT_MS;
    while ((await httpStatus(url)) !== 200) {
      if (gone || Date.now() > deadline) {
        const why = gone ? `exited (code ${child.exitCode}, signal ${child.signalCode})` : `not ready after ${AGENT_READY_TIMEOUT_MS} ms`;
        throw new Error(`agent on ${node.name} ${why}: ${url} never answered 200\n${tail(logFile)}`);
      }
      await sleep(POLL_MS);
    }
  }

  async wipeEtcdData(name: string): Promise<void> {
    const node = this.node(name);
    const aside = join(node.dir, 'etcd.yaml');
    await rename(join(node.manifestsDir, 'etcd.yaml'), aside);
    await this.kubelet.waitFor(node.name, 'etcd', 'stopped');
    await rm(node.dataDir, { recursive: true, force: true });
    await rename(aside, join(node.manifestsDir, 'etcd.yaml'));
  }

  agentPid(name: string): number | undefined {
    return this.agents.get(name)?.child.pid;
  }

  async resetNode(name: string): Promise<void> {
    const node = this.node(name);
    const pods = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler'];
    await emptyDir(node.manifestsDir);
    await Promise.all(pods.map((c) => this.kubelet.waitFor(node.name, c, 'stopped')));
    await emptyDir(join(node.kubernetesDir, 'pki'));
    await emptyDir(node.dataDir);
    for (const conf of [
      'admin.conf',
      'super-admin.conf',
      'kubelet.conf',
      'bootstrap-kubelet.conf',
      'controller-manager.conf',
      'scheduler.conf',
    ])
      await rm(join(node.kubernetesDir, conf), { force: true });
  }

  async moveNode(name: string, ip: string): Promise<void> {
    const node = this.node(name);
    if (this.agents.has(name)) throw new Error(`stop the agent of ${name} before moving it`);
    Object.assign(node, addresses(ip));
    const config = parse(await readFile(node.agentConfig, 'utf8')) as Record<string, unknown>;
    await writePrivate(node.agentConfig, stringify({ ...config, listen: node.agentAddress, health: node.healthAddress }));
    await issueAgentCert(this.kburPki.dir, node);
  }

  async stopAgent(name: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const agent = this.agents.get(this.node(name).name);
    if (!agent) return;
    await terminate(agent.child, agent.exited, signal);
    this.agents.delete(name);
  }

  async stop(): Promise<void> {
    await Promise.all([...this.agents.keys()].map((name) => this.stopAgent(name)));
    // A leader stopped while its followers are stopping too waits ~7 s for a leadership transfer
    // that cannot happen; stopped last, with no peer left connected, it exits at once.
    const leader = await this.etcdLeader();
    await this.kubelet.stop({ order: (node, container) => (container === 'etcd' && node === leader ? 1 : 0) });
  }

  /** The name of the member that leads, if the cluster answers. */
  private async etcdLeader(): Promise<string | undefined> {
    const endpoints = this.nodes.filter((n) => this.kubelet.running(n.name, 'etcd')).map((n) => n.clientUrl);
    if (endpoints.length === 0) return undefined;
    try {
      const timeouts = ['--dial-timeout=1s', '--command-timeout=2s'];
      const out = await this.etcdctl(['endpoint', 'status', '-w', 'json', ...timeouts], { endpoints });
      // Member ids are uint64: quote them before JSON.parse rounds them to doubles.
      const exact = out.replace(/"(member_id|leader)":(\d+)/g, '"$1":"$2"');
      type Status = { Endpoint: string; Status: { header: { member_id: string }; leader: string } };
      const statuses = JSON.parse(exact) as Status[];
      const leader = statuses.find((s) => s.Status.header.member_id === s.Status.leader);
      return this.nodes.find((n) => n.clientUrl === leader?.Endpoint)?.name;
    } catch {
      return undefined;
    }
  }

  private node(name: string): SandboxNode {
    const node = this.nodes.find((n) => n.name === name);
    if (!node) throw new Error(`no node ${name} in the sandbox (nodes: ${this.nodes.map((n) => n.name).join(', ')})`);
    return node;
  }
}

/** Deletes what a folder holds, keeping the folder, as kubeadm reset does. */
async function emptyDir(dir: string): Promise<void> {
  for (const entry of await readdir(dir).catch(() => [] as string[])) await rm(join(dir, entry), { recursive: true, force: true });
}

async function refuseBusyPorts(nodes: SandboxNode[]): Promise<void> {
  const addresses = nodes.flatMap((n) => [2379, 2380, 2381, 7443, 9443].map((port) => ({ host: n.ip, port })));
  const listening = await Promise.all(addresses.map((a) => isListening(a.host, a.port)));
  const busy = addresses.filter((_, i) => listening[i]);
  if (busy.length > 0) {
    const list = busy.map((a) => `${a.host}:${a.port}`).join(', ');
    throw new Error(`ports already in use: ${list}. Another sandbox or etcd runs (see pgrep -a etcd); stop it first.`);
  }
}

/** Lays out a kubeadm-like cluster under `root`, starts its etcd members and waits until they are healthy. */
export async function createSandbox(opts: SandboxOptions): Promise<Sandbox> {
  const count = opts.nodes ?? 3;
  if (!isAbsolute(opts.root)) throw new Error(`sandbox root must be an absolute path, got ${opts.root}`);
  if (!Number.isInteger(count) || count < 1 || count > 9) throw new Error(`sandbox nodes must be 1..9, got ${count}`);
  const root = opts.root;
  const nodes = Array.from({ length: count }, (_, i) =>
    sandboxNode(root, i + 1, opts.network ?? process.env.KBUR_SANDBOX_NETWORK ?? '127.0.0'),
  );
  await refuseBusyPorts(nodes);

  await makeDir(join(root, 'repo'), 0o700);
  await makeDir(join(root, 'logs'), 0o755);
  for (const node of nodes) {
    await makeDir(node.kubernetesDir, 0o755);
    await makeDir(node.manifestsDir, 0o700);
    await makeDir(node.dataDir, 0o700);
    await makeDir(node.stateDir, 0o700);
  }
  const pkiNodes = nodes.map((n) => ({ name: n.name, ip: n.ip, pkiDir: join(n.kubernetesDir, 'pki') }));
  await Promise.all([createKubernetesPki(pkiNodes), createKburPki(join(root, 'kbur-pki'), nodes)]);

  const token = `kbur-sandbox-${randomBytes(6).toString('hex')}`;
  const quota = opts.quotaBackendBytes ?? DEFAULT_QUOTA;
  await Promise.all([
    ...nodes.map((node) => writeNodeFiles(node, nodes, token, quota, root)),
    writePrivate(join(root, 'kbur.yaml'), stringify(coordinatorConfig(root, nodes))),
  ]);

  const sandbox = new LocalSandbox(root, nodes);
  sandbox.agentCommand = opts.agent;
  try {
    await sandbox.kubelet.start();
    const endpoints = nodes.map((n) => n.clientUrl);
    await waitForEtcdHealthy(sandbox, endpoints, ETCD_READY_TIMEOUT_MS);
    if (opts.seed ?? true) sandbox.seededKeys = await seed(nodes[0], endpoints);
  } catch (err) {
    await sandbox.stop();
    throw err;
  }
  return sandbox;
}

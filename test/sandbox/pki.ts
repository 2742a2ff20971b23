// A kubeadm-like PKI for the sandbox, made with openssl, and kbur's own mTLS PKI, made by `kbur pki`.
// Every certificate is a single `openssl req -x509` call (key and cert at once; `-CA` needs
// OpenSSL 3), and independent calls run in parallel.
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runPki } from '../../coordinator/pki.js';

export interface KeyPair {
  cert: string;
  key: string;
}

export interface CertSpec {
  cn: string;
  /** Organization(s): Kubernetes reads them as groups. */
  o?: string[];
  /** Absent for a self-signed CA. */
  issuer?: KeyPair;
  isCA?: boolean;
  usages?: ('serverAuth' | 'clientAuth')[];
  /** `IP:1.2.3.4` or `DNS:name`. */
  sans?: string[];
  days?: number;
}

export interface PkiNode {
  name: string;
  ip: string;
}

const CERT_MODE = 0o644;
const KEY_MODE = 0o600;
const DIR_MODE = 0o700;

/** Runs openssl; rejects with its stderr. */
function openssl(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, (err, _stdout, stderr) => {
      if (err) reject(new Error(`openssl ${args[0]} failed: ${stderr.trim() || err.message}`, { cause: err }));
      else resolve();
    });
  });
}

/** Runs `work` with a scratch directory that is removed afterwards. */
async function withScratchDir<T>(work: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'kbur-pki-'));
  try {
    return await work(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function configFor(spec: CertSpec): string {
  const dn = [...(spec.o ?? []).map((o, i) => `${i}.O = ${o}`), `CN = ${spec.cn}`];
  const ext = spec.isCA
    ? ['basicConstraints = critical,CA:TRUE', 'keyUsage = critical,digitalSignature,keyEncipherment,keyCertSign']
    : ['basicConstraints = critical,CA:FALSE', 'keyUsage = critical,digitalSignature,keyEncipherment'];
  if (spec.usages?.length) ext.push(`extendedKeyUsage = ${spec.usages.join(',')}`);
  if (spec.sans?.length) ext.push(`subjectAltName = ${spec.sans.join(',')}`);
  ext.push('subjectKeyIdentifier = hash');
  if (spec.issuer) ext.push('authorityKeyIdentifier = keyid');
  return ['[req]', 'distinguished_name = dn', 'prompt = no', '[dn]', ...dn, '[ext]', ...ext, ''].join('\n');
}

/** Writes a new EC P-256 key and a certificate for it, signed by `spec.issuer` (or self-signed). */
export async function issue(spec: CertSpec, out: KeyPair): Promise<void> {
  const args = ['req', '-x509', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  args.push('-keyout', out.key, '-out', out.cert, '-days', String(spec.days ?? 3650));
  if (spec.issuer) args.push('-CA', spec.issuer.cert, '-CAkey', spec.issuer.key);
  // openssl cannot read its config from a socket, which is what Node gives a child as stdin.
  await withScratchDir(async (dir) => {
    const config = join(dir, 'openssl.cnf');
    await writeFile(config, configFor(spec));
    await openssl([...args, '-config', config, '-extensions', 'ext']);
  });
  await Promise.all([chmod(out.key, KEY_MODE), chmod(out.cert, CERT_MODE)]);
}

/** Issues a certificate into a scratch directory and returns the PEM texts (for kubeconfigs). */
export function issuePem(spec: CertSpec): Promise<{ cert: string; key: string }> {
  return withScratchDir(async (dir) => {
    const files = pair(dir, 'tls');
    await issue(spec, files);
    const [cert, key] = await Promise.all([readFile(files.cert, 'utf8'), readFile(files.key, 'utf8')]);
    return { cert, key };
  });
}

export function pair(dir: string, name: string): KeyPair {
  return { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
}

function nodeSans(node: PkiNode): string[] {
  return [`IP:${node.ip}`, 'IP:127.0.0.1', 'DNS:localhost', `DNS:${node.name}`];
}

async function makeDirs(...dirs: string[]): Promise<void> {
  for (const dir of dirs) {
    await mkdir(dir, { recursive: true, mode: DIR_MODE });
    await chmod(dir, DIR_MODE);
  }
}

/** The cluster-wide CAs and service-account key pair, as `kubeadm init phase certs` writes them. */
async function createClusterCas(pki: string): Promise<void> {
  await makeDirs(pki, join(pki, 'etcd'));
  await Promise.all([
    issue({ cn: 'kubernetes', isCA: true }, pair(pki, 'ca')),
    issue({ cn: 'front-proxy-ca', isCA: true }, pair(pki, 'front-proxy-ca')),
    issue({ cn: 'etcd-ca', isCA: true }, pair(join(pki, 'etcd'), 'ca')),
    openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', join(pki, 'sa.key')]),
  ]);
  await openssl(['pkey', '-in', join(pki, 'sa.key'), '-pubout', '-out', join(pki, 'sa.pub')]);
  await Promise.all([chmod(join(pki, 'sa.key'), KEY_MODE), chmod(join(pki, 'sa.pub'), CERT_MODE)]);
}

const SHARED_FILES = ['ca.crt', 'ca.key', 'front-proxy-ca.crt', 'front-proxy-ca.key', 'sa.key', 'sa.pub', 'etcd/ca.crt', 'etcd/ca.key'];

async function copySharedFiles(from: string, to: string): Promise<void> {
  await makeDirs(to, join(to, 'etcd'));
  await Promise.all(
    SHARED_FILES.map(async (file) => {
      await copyFile(join(from, file), join(to, file));
      await chmod(join(to, file), file.endsWith('.key') ? KEY_MODE : CERT_MODE);
    }),
  );
}

/** The certificates that differ from node to node (`kubeadm init phase certs` on each node). */
function createNodeCerts(pki: string, node: PkiNode): Promise<void[]> {
  const ca = pair(pki, 'ca');
  const etcdDir = join(pki, 'etcd');
  const etcdCa = pair(etcdDir, 'ca');
  const apiserverSans = [
    `IP:${node.ip}`,
    'IP:10.96.0.1',
    'IP:127.0.0.1',
    'DNS:kubernetes',
    'DNS:kubernetes.default',
    'DNS:kubernetes.default.svc',
    'DNS:kubernetes.default.svc.cluster.local',
    `DNS:${node.name}`,
    'DNS:localhost',
  ];
  const both: CertSpec['usages'] = ['serverAuth', 'clientAuth'];
  return Promise.all([
    issue({ cn: 'kube-apiserver', issuer: ca, usages: ['serverAuth'], sans: apiserverSans }, pair(pki, 'apiserver')),
    issue(
      { cn: 'kube-apiserver-kubelet-client', o: ['kubeadm:cluster-admins'], issuer: ca, usages: ['clientAuth'] },
      pair(pki, 'apiserver-kubelet-client'),
    ),
    issue({ cn: 'kube-apiserver-etcd-client', issuer: etcdCa, usages: ['clientAuth'] }, pair(pki, 'apiserver-etcd-client')),
    issue({ cn: 'front-proxy-client', issuer: pair(pki, 'front-proxy-ca'), usages: ['clientAuth'] }, pair(pki, 'front-proxy-client')),
    issue({ cn: node.name, issuer: etcdCa, usages: both, sans: nodeSans(node) }, pair(etcdDir, 'server')),
    issue({ cn: node.name, issuer: etcdCa, usages: both, sans: nodeSans(node) }, pair(etcdDir, 'peer')),
    issue(
      { cn: 'kube-etcd-healthcheck-client', o: ['system:masters'], issuer: etcdCa, usages: ['clientAuth'] },
      pair(etcdDir, 'healthcheck-client'),
    ),
  ]);
}

/**
 * Writes `<pkiDir>/...` for every node: the cluster CAs are made once and copied to each node, as
 * `kubeadm join --control-plane` does; the server, peer and client certificates are per node.
 */
export async function createKubernetesPki(nodes: (PkiNode & { pkiDir: string })[]): Promise<void> {
  const [first, ...others] = nodes;
  if (!first) throw new Error('createKubernetesPki needs at least one node');
  await createClusterCas(first.pkiDir);
  await Promise.all(others.map((node) => copySharedFiles(first.pkiDir, node.pkiDir)));
  await Promise.all(nodes.map((node) => createNodeCerts(node.pkiDir, node)));
}

/** Client identities issued by kbur's CA; `stranger` is valid but mapped to no role anywhere. */
export const KBUR_CLIENTS = ['kbur-admin', 'kbur-operator', 'monitoring', 'stranger'] as const;

/**
 * kbur's own PKI in `dir`, made by `kbur pki` (coordinator/pki.ts) as an operator would: `ca`,
 * `agent-<node>` server certs, the client certs above, and an unrelated `rogue-ca` (same subject
 * name as kbur's CA, different key) with a `rogue-admin` cert whose CN impersonates `kbur-admin`.
 */
export async function createKburPki(dir: string, nodes: PkiNode[]): Promise<void> {
  const rogueDir = join(dir, 'rogue');
  await Promise.all([runPki({ action: 'init', dir }), runPki({ action: 'init', dir: rogueDir })]);
  await Promise.all([
    ...nodes.map((node) => issueAgentCert(dir, node)),
    ...KBUR_CLIENTS.map((name) => runPki({ action: 'client', dir, name })),
    runPki({ action: 'client', dir: rogueDir, name: 'kbur-admin' }),
  ]);
  await Promise.all([
    rename(join(rogueDir, 'ca.crt'), join(dir, 'rogue-ca.crt')),
    rename(join(rogueDir, 'ca.key'), join(dir, 'rogue-ca.key')),
    rename(join(rogueDir, 'kbur-admin.crt'), join(dir, 'rogue-admin.crt')),
    rename(join(rogueDir, 'kbur-admin.key'), join(dir, 'rogue-admin.key')),
  ]);
  await rm(rogueDir, { recursive: true });
}

/**
 * An agent's server certificate from kbur's CA in `dir` for its node's address, as `kbur pki agent`
 * issues it; a node that moved gets a new one in place of the old (kbur pki never overwrites).
 */
export async function issueAgentCert(dir: string, node: PkiNode): Promise<void> {
  await Promise.all(['crt', 'key'].map((ext) => rm(join(dir, `agent-${node.name}.${ext}`), { force: true })));
  await runPki({ action: 'agent', dir, node: node.name, ips: [node.ip, '127.0.0.1'], dns: ['localhost'] });
}

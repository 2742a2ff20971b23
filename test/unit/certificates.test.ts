import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { stringify } from 'yaml';
import { readCertificates } from '../../agent/kubernetes/certificates.js';
import { issue, issuePem } from '../sandbox/pki.js';

describe("a node's certificates and their expiry", function () {
  this.timeout(20_000);
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kbur-unit-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('reads every certificate under pki/ (chains too) and in the kubeconfigs, and skips what is not one', async () => {
    const k8s = join(dir, 'kubernetes');
    await mkdir(join(k8s, 'pki', 'etcd'), { recursive: true });
    const ca = { cert: join(k8s, 'pki', 'ca.crt'), key: join(k8s, 'pki', 'ca.key') };
    await issue({ cn: 'kubernetes', isCA: true, days: 3650 }, ca);
    const server = { cert: join(k8s, 'pki', 'etcd', 'server.crt'), key: join(k8s, 'pki', 'etcd', 'server.key') };
    await issue({ cn: 'etcd-server', issuer: ca, days: 365 }, server);
    // A chain: the leaf and its CA in one file.
    await writeFile(join(k8s, 'pki', 'chain.pem'), (await readFile(server.cert, 'utf8')) + (await readFile(ca.cert, 'utf8')));
    await writeFile(join(k8s, 'pki', 'broken.crt'), '-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n');
    const admin = await issuePem({ cn: 'kubernetes-admin', o: ['kubeadm:cluster-admins'], issuer: ca, days: 30 });
    await writeFile(
      join(k8s, 'admin.conf'),
      stringify({ users: [{ name: 'admin', user: { 'client-certificate-data': Buffer.from(admin.cert).toString('base64') } }] }),
    );
    await writeFile(
      join(k8s, 'kubelet.conf'),
      stringify({ users: [{ name: 'kubelet', user: { 'client-certificate': '/var/lib/kubelet/pki/x.pem' } }] }),
    );
    await writeFile(join(k8s, 'broken.conf'), 'users: [');

    const certs = await readCertificates(k8s, [ca.cert, join(dir, 'missing.crt')]);
    const days = (c: { notAfterSeconds: number }) => Math.round((c.notAfterSeconds * 1000 - Date.now()) / 86_400_000);
    expect(certs.map((c) => [c.file.slice(k8s.length + 1), c.subject, days(c)])).to.deep.equal([
      ['pki/ca.crt', 'CN=kubernetes', 3650],
      ['pki/chain.pem', 'CN=etcd-server', 365],
      ['pki/chain.pem', 'CN=kubernetes', 3650],
      ['pki/etcd/server.crt', 'CN=etcd-server', 365],
      ['admin.conf', 'O=kubeadm:cluster-admins, CN=kubernetes-admin', 30],
    ]);
  });

  it('reports nothing, and does not fail, for a kubernetes dir that does not exist', async () => {
    expect(await readCertificates(join(dir, 'nope'))).to.deep.equal([]);
  });
});

import { createPrivateKey, X509Certificate } from 'node:crypto';
import { expect } from 'chai';
import { describeCertificate, issue } from '../../shared/x509.js';

describe('x509 issue(template, issuer)', function () {
  // Key generation (an RSA key below) takes seconds on a loaded machine.
  this.timeout(20_000);
  it('makes a CA that may only sign, and a server certificate for its addresses that it signed', async function () {
    const ca = await issue({ cn: 'test-ca', isCA: true, days: 3650 });
    const server = await issue({ cn: 'kbur-agent-node-1', usages: ['serverAuth'], ips: ['10.0.0.11'], dns: ['master-1'], days: 365 }, ca);
    const caCert = new X509Certificate(ca.cert);
    const cert = new X509Certificate(server.cert);
    expect(caCert.ca).to.equal(true);
    expect(cert.ca).to.equal(false);
    expect(cert.verify(caCert.publicKey)).to.equal(true);
    expect(cert.checkIssued(caCert)).to.equal(true);
    expect(cert.checkIP('10.0.0.11')).to.equal('10.0.0.11');
    expect(cert.checkHost('master-1')).to.equal('master-1');
    const info = describeCertificate(server.cert);
    expect(info).to.include({ cn: 'kbur-agent-node-1', issuerCn: 'test-ca', isCA: false, keyType: 'ec-p256' });
    expect(info.usages).to.deep.equal(['serverAuth']);
    const days = (info.notAfter.getTime() - Date.now()) / 86_400_000;
    expect(days).to.be.within(364.9, 365.01);
    expect(createPrivateKey(server.key).asymmetricKeyType).to.equal('ec');
  });

  it('issues an Ed25519 client certificate from an EC CA, and an Ed25519 CA signs with Ed25519', async function () {
    const ca = await issue({ cn: 'test-ca', isCA: true, days: 10 });
    const client = await issue({ cn: 'ed', usages: ['clientAuth'], days: 1, keyType: 'ed25519' }, ca);
    expect(describeCertificate(client.cert)).to.include({ keyType: 'ed25519' });
    expect(new X509Certificate(client.cert).verify(new X509Certificate(ca.cert).publicKey)).to.equal(true);
    const edCa = await issue({ cn: 'ed-ca', isCA: true, days: 10, keyType: 'ed25519' });
    const leaf = await issue({ cn: 'leaf', usages: ['clientAuth'], days: 1 }, edCa);
    expect(new X509Certificate(leaf.cert).verify(new X509Certificate(edCa.cert).publicKey)).to.equal(true);
  });

  it('refuses an issuer key of a type it does not sign with, naming it', async function () {
    const ca = await issue({ cn: 'test-ca', isCA: true, days: 10 });
    const { generateKeyPairSync } = await import('node:crypto');
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const err = await issue({ cn: 'x', days: 1 }, { cert: ca.cert, key: rsa }).catch((e: Error) => e);
    expect((err as Error).message).to.match(/issuer key is rsa/);
  });
});

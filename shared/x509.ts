import { createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import type { webcrypto as wc } from 'node:crypto';
// @peculiar/x509 needs the Reflect metadata API (its dependency injection) loaded first.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

// Node's WebCrypto is the standard one; the library's types name the DOM's.
x509.cryptoProvider.set(webcrypto as never);

/** The IP addresses a certificate's subjectAltName names. */
export function ipSans(pem: string): string[] {
  const san = new x509.X509Certificate(pem).getExtension(x509.SubjectAlternativeNameExtension);
  return (san?.names.items ?? []).filter((n) => n.type === 'ip').map((n) => n.value);
}

/** Whether a certificate is a CA's (basicConstraints CA:TRUE). */
export function isCa(pem: string): boolean {
  return new x509.X509Certificate(pem).getExtension(x509.BasicConstraintsExtension)?.ca ?? false;
}

/** Whether `ca` issued `cert` (its subject is the issuer, and its key checks the signature). */
export async function issuedBy(cert: string, ca: string): Promise<boolean> {
  const c = new x509.X509Certificate(cert);
  const a = new x509.X509Certificate(ca);
  return c.issuer === a.subject && (await c.verify({ publicKey: a.publicKey, signatureOnly: true }));
}

/**
 * The same certificate issued again by its CA with addresses replaced in its subjectAltName: same
 * key, subject, extensions (key usages, extended usages, constraints, key ids) and end of
 * validity, a new serial, valid from now.
 */
export async function reissueWithAddresses(opts: {
  cert: string;
  caCert: string;
  caKey: string;
  replace: Map<string, string>;
}): Promise<string> {
  const cert = new x509.X509Certificate(opts.cert);
  const ca = new x509.X509Certificate(opts.caCert);
  const { algorithm, signing } = signingAlgorithm(opts.caKey);
  const der = createPrivateKey(opts.caKey).export({ type: 'pkcs8', format: 'der' });
  const signingKey = await webcrypto.subtle.importKey('pkcs8', der, algorithm, false, ['sign']);
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const names = (san?.names.items ?? []).map((n) => ({
    type: n.type,
    value: n.type === 'ip' ? (opts.replace.get(n.value) ?? n.value) : n.value,
  }));
  const extensions = cert.extensions.map((e) =>
    e instanceof x509.SubjectAlternativeNameExtension ? new x509.SubjectAlternativeNameExtension(names, e.critical) : e,
  );
  const serial = randomBytes(16);
  serial[0]! &= 0x7f;
  const issued = await x509.X509CertificateGenerator.create({
    serialNumber: serial.toString('hex'),
    // The names as encoded (not reparsed from text): chain builders such as Go's compare the
    // issuer's bytes with the CA's subject bytes, and a re-encoded string type breaks the match.
    subject: cert.subjectName,
    issuer: ca.subjectName,
    notBefore: new Date(),
    notAfter: cert.notAfter,
    signingAlgorithm: signing,
    publicKey: await cert.publicKey.export(),
    signingKey: signingKey as never,
    extensions,
  });
  return issued.toString('pem') + '\n';
}

function signingAlgorithm(keyPem: string): {
  algorithm: wc.EcKeyImportParams | wc.RsaHashedImportParams;
  signing: wc.EcdsaParams | wc.RsaHashedImportParams;
} {
  const key = createPrivateKey(keyPem);
  if (key.asymmetricKeyType === 'ec') {
    const curve = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' }[key.asymmetricKeyDetails?.namedCurve ?? ''] ?? 'P-256';
    const hash = curve === 'P-384' ? 'SHA-384' : curve === 'P-521' ? 'SHA-512' : 'SHA-256';
    return { algorithm: { name: 'ECDSA', namedCurve: curve }, signing: { name: 'ECDSA', hash } };
  }
  return { algorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, signing: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } };
}

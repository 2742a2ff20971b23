/**
 * X.509 certificates from templates, with @peculiar/x509 over Node's WebCrypto: a new key pair
 * and a certificate signed by an issuer (or self-signed) for kbur's own PKI, and a cluster's leaf
 * certificate issued again by its CA with new addresses (a restore onto new machines).
 */
// tsyringe, which @peculiar/x509 uses inside, needs the Reflect metadata API before it loads.
import 'reflect-metadata';
import { createPrivateKey, createPublicKey, randomBytes, webcrypto, type KeyObject } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { KburError } from './errors.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export const KEY_TYPES = ['ec-p256', 'ed25519'] as const;
export type KeyType = (typeof KEY_TYPES)[number];
export type ExtendedUsage = 'serverAuth' | 'clientAuth';

export interface CertTemplate {
  /** Subject common name. */
  cn: string;
  /** Subject organizations (Kubernetes reads them as groups). */
  o?: string[];
  /** A CA: may sign certificates, and nothing else. */
  isCA?: boolean;
  /** Extended key usages of a leaf certificate. */
  usages?: ExtendedUsage[];
  ips?: string[];
  dns?: string[];
  /** Validity in days from now (backdated by 5 minutes for clocks that lag). */
  days: number;
  /** The new key's type; default ec-p256. */
  keyType?: KeyType;
}

/** PEM texts. */
export interface PemPair {
  cert: string;
  key: string;
}

const ALGORITHMS: Record<KeyType, webcrypto.EcKeyGenParams | webcrypto.Algorithm> = {
  'ec-p256': { name: 'ECDSA', namedCurve: 'P-256' },
  ed25519: { name: 'Ed25519' },
};
const SIGNING: Record<KeyType, webcrypto.Algorithm | webcrypto.EcdsaParams> = {
  'ec-p256': { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams,
  ed25519: { name: 'Ed25519' },
};
const BACKDATE_MS = 5 * 60_000;

function keyTypeOf(key: KeyObject): KeyType {
  if (key.asymmetricKeyType === 'ed25519') return 'ed25519';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ec-p256';
  throw new KburError('INVALID_ARGUMENT', `issuer key is ${key.asymmetricKeyType} ${key.asymmetricKeyDetails?.namedCurve ?? ''}`.trim(), {
    hint: `use a CA key of type ${KEY_TYPES.join(' or ')}`,
  });
}

function extensionsFor(t: CertTemplate): x509.Extension[] {
  if (t.isCA) {
    return [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
    ];
  }
  // An EC or Ed25519 key only ever signs (the TLS handshake's ECDHE); it never encrypts a session key.
  const ext: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
  ];
  if (t.usages?.length) ext.push(new x509.ExtendedKeyUsageExtension(t.usages.map((u) => x509.ExtendedKeyUsage[u])));
  const names = [
    ...(t.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
    ...(t.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
  ];
  if (names.length) ext.push(new x509.SubjectAlternativeNameExtension(names));
  return ext;
}

function distinguishedName(t: CertTemplate): x509.JsonName {
  return [...(t.o ?? []).map((o) => ({ O: [o] })), { CN: [t.cn] }];
}

/**
 * A new key pair and a certificate for it from `template`, signed by `issuer` (a CA's PEM cert and
 * key), or self-signed without one. The signature algorithm follows the signing key's type.
 */
export async function issue(template: CertTemplate, issuer?: PemPair): Promise<PemPair> {
  const keyType = template.keyType ?? 'ec-p256';
  const keys = (await webcrypto.subtle.generateKey(ALGORITHMS[keyType], true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const common = {
    serialNumber: randomSerial(),
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + template.days * 86_400_000),
    extensions: [...extensionsFor(template), await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)],
  };
  let cert: x509.X509Certificate;
  if (issuer) {
    const caCert = new x509.X509Certificate(issuer.cert);
    const caKeyObject = createPrivateKey(issuer.key);
    const caKeyType = keyTypeOf(caKeyObject);
    const signingKey = caKeyObject.toCryptoKey(ALGORITHMS[caKeyType], false, ['sign']);
    common.extensions.push(await x509.AuthorityKeyIdentifierExtension.create(caCert));
    cert = await x509.X509CertificateGenerator.create({
      ...common,
      subject: distinguishedName(template),
      issuer: caCert.subjectName,
      publicKey: keys.publicKey,
      signingKey,
      signingAlgorithm: SIGNING[caKeyType],
    });
  } else {
    cert = await x509.X509CertificateGenerator.createSelfSigned({
      ...common,
      name: distinguishedName(template),
      keys,
      signingAlgorithm: SIGNING[keyType],
    });
  }
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return { cert: cert.toString('pem') + '\n', key: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') + '\n' };
}

/** A positive 128-bit serial (the top bit clear, so DER needs no sign byte). */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f;
  return bytes.toString('hex');
}

export interface CertInfo {
  cn: string;
  issuerCn: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
  isCA: boolean;
  usages: ExtendedUsage[];
  ips: string[];
  dns: string[];
  keyType: string;
}

/** What a PEM certificate says, for listings and checks. */
export function describeCertificate(pem: string): CertInfo {
  const cert = new x509.X509Certificate(pem);
  const basic = cert.getExtension(x509.BasicConstraintsExtension);
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const names = san?.names.toJSON() ?? [];
  const key = createPublicKey(pem);
  return {
    cn: cert.subjectName.getField('CN')[0] ?? '',
    issuerCn: cert.issuerName.getField('CN')[0] ?? '',
    serial: cert.serialNumber,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    isCA: basic?.ca ?? false,
    usages: (eku?.usages ?? []).flatMap((u) =>
      u === x509.ExtendedKeyUsage.serverAuth
        ? ['serverAuth' as const]
        : u === x509.ExtendedKeyUsage.clientAuth
          ? ['clientAuth' as const]
          : [],
    ),
    ips: names.filter((n) => n.type === 'ip').map((n) => n.value),
    dns: names.filter((n) => n.type === 'dns').map((n) => n.value),
    keyType:
      key.asymmetricKeyType === 'ec'
        ? key.asymmetricKeyDetails?.namedCurve === 'prime256v1'
          ? 'ec-p256'
          : `ec-${key.asymmetricKeyDetails?.namedCurve ?? '?'}`
        : (key.asymmetricKeyType ?? '?'),
  };
}

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
  const issued = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
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
  algorithm: webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams;
  signing: webcrypto.EcdsaParams | webcrypto.RsaHashedImportParams;
} {
  const key = createPrivateKey(keyPem);
  if (key.asymmetricKeyType === 'ec') {
    const curve = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' }[key.asymmetricKeyDetails?.namedCurve ?? ''] ?? 'P-256';
    const hash = curve === 'P-384' ? 'SHA-384' : curve === 'P-521' ? 'SHA-512' : 'SHA-256';
    return { algorithm: { name: 'ECDSA', namedCurve: curve }, signing: { name: 'ECDSA', hash } };
  }
  return { algorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, signing: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } };
}

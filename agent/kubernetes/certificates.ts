import { X509Certificate } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';
import type { CertificateExpiry } from '../../proto/gen/kbur/v1/agent.js';

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * Every certificate this node's control plane depends on, with its expiry: each one under
 * <kubernetesDir>/pki (any depth; a file may hold a chain), each one embedded in a kubeconfig of
 * <kubernetesDir> (client-certificate-data), and the `extra` files (the agent's own TLS). An
 * unreadable file is skipped: this is a report, and a missing file has nothing to expire.
 */
export async function readCertificates(kubernetesDir: string, extra: string[] = []): Promise<CertificateExpiry[]> {
  const pki = join(kubernetesDir, 'pki');
  const pkiFiles = await readdir(pki, { recursive: true, withFileTypes: true }).then(
    (entries) => entries.filter((e) => e.isFile() && /\.(crt|pem)$/.test(e.name)).map((e) => join(e.parentPath, e.name)),
    () => [],
  );
  const kubeconfigs = await readdir(kubernetesDir, { withFileTypes: true }).then(
    (entries) => entries.filter((e) => e.isFile() && e.name.endsWith('.conf')).map((e) => join(kubernetesDir, e.name)),
    () => [],
  );
  const found = await Promise.all([
    ...[...pkiFiles.sort(), ...extra].map(async (file) => fromPem(file, await readFile(file, 'utf8').catch(() => ''))),
    ...kubeconfigs.sort().map(fromKubeconfig),
  ]);
  // The agent's CA is often the same file as one under pki/ (or listed twice): one series per file and subject.
  const seen = new Set<string>();
  return found.flat().filter((c) => {
    const key = `${c.file}\0${c.subject}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function fromPem(file: string, text: string): CertificateExpiry[] {
  return [...text.matchAll(PEM_BLOCK)].flatMap((m) => {
    try {
      return [expiryOf(file, new X509Certificate(m[0]))];
    } catch {
      return [];
    }
  });
}

async function fromKubeconfig(file: string): Promise<CertificateExpiry[]> {
  let doc: unknown;
  try {
    doc = parse(await readFile(file, 'utf8'));
  } catch {
    return [];
  }
  const users = (doc as { users?: unknown } | null)?.users;
  if (!Array.isArray(users)) return [];
  return users.flatMap((u: unknown) => {
    const data = (u as { user?: { 'client-certificate-data'?: unknown } } | null)?.user?.['client-certificate-data'];
    return typeof data === 'string' ? fromPem(file, Buffer.from(data, 'base64').toString('utf8')) : [];
  });
}

function expiryOf(file: string, cert: X509Certificate): CertificateExpiry {
  // X509Certificate gives the subject as "CN=x\nO=y" lines; one line reads better in a label.
  return { file, subject: cert.subject.split('\n').join(', '), notAfterSeconds: Math.floor(Date.parse(cert.validTo) / 1000) };
}

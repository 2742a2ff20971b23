/**
 * kbur's own PKI, for the mTLS between kbur and its agents: a CA made for kbur alone (never the
 * cluster's), a server certificate per agent, a client certificate per caller. One directory:
 *
 *   ca.crt ca.key                 the CA (the key signs every certificate below; keep it off the masters)
 *   agent-<node>.crt/.key         serverAuth only, with the IPs and DNS names kbur dials
 *   <name>.crt/.key               clientAuth only; its CN is what an agent's `clients` maps to a role
 *
 * Keys are written 0600, certificates 0644, the directory 0700; nothing is ever overwritten.
 */
import { chmod, mkdir, readFile, readdir } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { z } from 'zod';
import { KburError } from '../shared/errors.js';
import { pathExists } from '../shared/path-exists.js';
import { writeFileAtomic } from '../shared/streams.js';
import { KEY_TYPES, describeCertificate, issue, type CertInfo, type CertTemplate, type KeyType, type PemPair } from '../shared/x509.js';

export const DEFAULT_PKI_DIR = '/etc/kbur/pki';
/** kubeadm's choices: a CA for ten years, the certificates it signs for one. */
export const CA_DAYS = 3650;
export const LEAF_DAYS = 365;
export const ROLES = ['admin', 'operator', 'monitor'] as const;

const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, {
  message: 'expected a name of letters, digits, ".", "_" or "-" (max 63), starting with a letter or digit',
});
const dnsName = z.string().regex(/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/, {
  message: 'expected a DNS name such as master-1.example.com',
});
const ip = z.string().refine((s) => isIP(s) !== 0, { message: 'expected an IPv4 or IPv6 address' });
const common = { dir: z.string().min(1), keyType: z.enum(KEY_TYPES).default('ec-p256') };

export const pkiRequestSchema = z.discriminatedUnion('action', [
  z.strictObject({ action: z.literal('init'), ...common, cn: name.default('kbur-ca'), days: z.number().int().positive().default(CA_DAYS) }),
  z.strictObject({
    action: z.literal('agent'),
    ...common,
    node: name,
    ips: z.array(ip).default([]),
    dns: z.array(dnsName).default([]),
    days: z.number().int().positive().default(LEAF_DAYS),
  }),
  z.strictObject({
    action: z.literal('client'),
    ...common,
    name: name.refine((n) => n !== 'ca' && !n.startsWith('agent-'), {
      message: 'expected a name other than "ca" or "agent-*" (the CA\'s and the agents\' files)',
    }),
    role: z.enum(ROLES).default('admin'),
    days: z.number().int().positive().default(LEAF_DAYS),
  }),
]);
export type PkiRequest = z.input<typeof pkiRequestSchema>;

export interface Issued {
  cert: string;
  key: string;
  info: CertInfo;
}

function files(dir: string, base: string): { cert: string; key: string } {
  return { cert: join(dir, `${base}.crt`), key: join(dir, `${base}.key`) };
}

async function refuseExisting(paths: string[]): Promise<void> {
  for (const path of paths) {
    if (await pathExists(path)) {
      throw new KburError('FAILED_PRECONDITION', `${path} already exists; kbur pki never overwrites a key or a certificate`, {
        hint: 'move the old pair somewhere else first (or use another name or --dir)',
      });
    }
  }
}

async function write(dir: string, base: string, pem: PemPair): Promise<{ cert: string; key: string }> {
  const out = files(dir, base);
  await refuseExisting([out.cert, out.key]);
  await writeFileAtomic(out.key, pem.key, { noOverwrite: true });
  await writeFileAtomic(out.cert, pem.cert, { noOverwrite: true });
  await chmod(out.cert, 0o644);
  return out;
}

async function readCa(dir: string): Promise<PemPair> {
  const ca = files(dir, 'ca');
  try {
    const [cert, key] = await Promise.all([readFile(ca.cert, 'utf8'), readFile(ca.key, 'utf8')]);
    return { cert, key };
  } catch (err) {
    throw new KburError('FAILED_PRECONDITION', `no kbur CA in ${dir}: ${(err as Error).message}`, {
      cause: err,
      hint: `run kbur pki init --dir ${dir} first (or point --dir at the directory that holds ca.crt and ca.key)`,
    });
  }
}

/** Issues what the request asks for into its directory and returns the files written. */
export async function runPki(request: PkiRequest): Promise<Issued> {
  const req = parse(request);
  const keyType: KeyType = req.keyType;
  let base: string;
  let template: CertTemplate;
  let issuer: PemPair | undefined;
  if (req.action === 'init') {
    await mkdir(req.dir, { recursive: true, mode: 0o700 });
    await chmod(req.dir, 0o700);
    await refuseExisting(Object.values(files(req.dir, 'ca')));
    base = 'ca';
    template = { cn: req.cn, isCA: true, days: req.days, keyType };
  } else if (req.action === 'agent') {
    if (req.ips.length + req.dns.length === 0) {
      throw new KburError('INVALID_ARGUMENT', `kbur pki agent ${req.node}: no --ip and no --dns`, {
        hint: 'give the address(es) kbur dials for this agent (kbur.yaml nodes[].agent), e.g. --ip 10.0.0.11',
      });
    }
    issuer = await readCa(req.dir);
    base = `agent-${req.node}`;
    template = { cn: `kbur-agent-${req.node}`, usages: ['serverAuth'], ips: req.ips, dns: req.dns, days: req.days, keyType };
  } else {
    issuer = await readCa(req.dir);
    base = req.name;
    template = { cn: req.name, usages: ['clientAuth'], days: req.days, keyType };
  }
  const pem = await issue(template, issuer);
  const out = await write(req.dir, base, pem);
  return { ...out, info: describeCertificate(pem.cert) };
}

function parse(request: PkiRequest): z.output<typeof pkiRequestSchema> {
  const result = pkiRequestSchema.safeParse(request);
  if (result.success) return result.data;
  const issue0 = result.error.issues[0]!;
  const field = issue0.path.join('.');
  const value = issue0.path.reduce<unknown>((v, k) => (v as Record<PropertyKey, unknown> | undefined)?.[k], request);
  throw new KburError('INVALID_ARGUMENT', `kbur pki ${request.action}: ${field} "${String(value)}": ${issue0.message}`, {
    hint: 'see kbur pki --help',
  });
}

export interface ListedCert extends CertInfo {
  file: string;
  /** Days until it expires (negative: expired). */
  daysLeft: number;
}

/** Every certificate in the directory, the CA first, then by name. */
export async function listIssued(dir: string, now = new Date()): Promise<ListedCert[]> {
  let names: string[];
  try {
    names = (await readdir(dir))
      .filter((f) => f.endsWith('.crt'))
      .sort((a, b) => Number(b === 'ca.crt') - Number(a === 'ca.crt') || a.localeCompare(b));
  } catch (err) {
    throw new KburError('NOT_FOUND', `cannot read PKI directory ${dir}: ${(err as Error).message}`, {
      cause: err,
      hint: 'run kbur pki init, or point --dir at the directory that holds ca.crt',
    });
  }
  return Promise.all(
    names.map(async (file) => {
      const info = describeCertificate(await readFile(join(dir, file), 'utf8'));
      return { file, ...info, daysLeft: Math.floor((info.notAfter.getTime() - now.getTime()) / 86_400_000) };
    }),
  );
}

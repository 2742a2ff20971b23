import { readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join, relative } from 'node:path';
import type { AddressChange } from '../../proto/gen/kbur/v1/agent.js';
import { replaceAddresses } from '../../shared/addresses.js';
import { KburError } from '../../shared/errors.js';
import { byCodeUnits } from '../../shared/order.js';
import { pathExists } from '../../shared/path-exists.js';
import { ipSans, isCa, issuedBy, reissueWithAddresses } from '../../shared/x509.js';

/** Configuration files are small; anything larger is not one kbur rewrites. */
const MAX_TEXT_BYTES = 1 << 20;

/**
 * A node's unpacked archive made to fit its new address (kbur restore --to): every leaf
 * certificate whose subjectAltName names an old address is issued again by its CA (from the
 * archive, kubeadm's layout: pki/ca, pki/etcd/ca, pki/front-proxy-ca), and every configuration
 * file outside pki/ that names one is rewritten. Files keep their modes and owners. Says what it changed.
 */
export async function readdressTree(dir: string, changes: AddressChange[]): Promise<string[]> {
  for (const c of changes) {
    if (isIP(c.from) !== 4 || isIP(c.to) !== 4) {
      throw new KburError('INVALID_ARGUMENT', `readdress: "${c.from}" -> "${c.to}" is not a change of one IPv4 address to another`, {
        hint: 'the --to file names IPv4 addresses',
      });
    }
  }
  const replace = new Map(changes.map((c) => [c.from, c.to]));
  const files = (await readdir(dir, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort(byCodeUnits);
  const done: string[] = [];
  const certs = files.filter((f) => f.startsWith('pki/') && f.endsWith('.crt'));
  const cas = (await Promise.all(certs.map(async (f) => ((await isCa(await readFile(join(dir, f), 'utf8'))) ? [f] : [])))).flat();
  for (const rel of certs) {
    const pem = await readFile(join(dir, rel), 'utf8');
    const named = ipSans(pem).filter((ip) => replace.has(ip));
    if (cas.includes(rel) || named.length === 0) continue;
    const ca = await issuerOf(dir, pem, cas);
    if (!ca) {
      throw new KburError('FAILED_PRECONDITION', `${rel} names ${named.join(', ')} but its CA and key are not in the archive`, {
        hint: 'issue it again by hand with the new address (kubeadm certs renew), or restore without --to',
      });
    }
    const caKey = ca.replace(/\.crt$/, '.key');
    await writeFile(
      join(dir, rel),
      await reissueWithAddresses({
        cert: pem,
        caCert: await readFile(join(dir, ca), 'utf8'),
        caKey: await readFile(join(dir, caKey), 'utf8'),
        replace,
      }),
    );
    done.push(`issued ${rel} again by ${ca}: ${named.map((a) => `${a} -> ${replace.get(a)}`).join(', ')} in its subjectAltName`);
  }
  for (const rel of files.filter((f) => !f.startsWith('pki/'))) {
    const path = join(dir, rel);
    if ((await stat(path)).size > MAX_TEXT_BYTES) continue;
    const text = await readFile(path, 'utf8');
    const found = new Set<string>();
    const changed = replaceAddresses(text, replace, found);
    if (changed === text) continue;
    await writeFile(path, changed);
    done.push(`rewrote ${rel}: ${[...found].map((a) => `${a} -> ${replace.get(a)}`).join(', ')}`);
  }
  return done;
}

async function issuerOf(dir: string, pem: string, cas: string[]): Promise<string | undefined> {
  for (const ca of cas) {
    if (!(await pathExists(join(dir, ca.replace(/\.crt$/, '.key'))))) continue;
    if (await issuedBy(pem, await readFile(join(dir, ca), 'utf8')).catch(() => false)) return ca;
  }
  return undefined;
}

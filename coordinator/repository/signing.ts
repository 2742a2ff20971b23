import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { text } from 'node:stream/consumers';
import { z } from 'zod';
import { KburError, errorMessage } from '../../shared/errors.js';
import { parseManifest, type Manifest } from '../../shared/manifest.js';
import { pathExists } from '../../shared/path-exists.js';
import type { BackupWriter, Repository } from './repository.js';

/**
 * Signed manifests: whoever can write the repository could otherwise swap an artifact and fix its
 * hashes in the manifest. The signature lives beside the manifest (manifest.json.sig), so a kbur
 * that knows nothing of signing reads signed sets as before, and unsigned sets stay readable.
 * It signs the manifest's JSON value (JSON.stringify of what manifest.json parses to), not its
 * formatting. Only the configured key is trusted: the public key recorded in the .sig file says
 * which key signed, for the operator, and is never used to check it.
 */

export const SIGNATURE_FILE = 'manifest.json.sig';

const signatureSchema = z.object({
  algorithm: z.literal('ed25519'),
  keyId: z.string(),
  publicKey: z.string(),
  signedAt: z.string(),
  signature: z.string(),
});

export interface SigningKeys {
  /** The file the keys came from, for messages. */
  file: string;
  /** Absent on a host that only restores (signing.publicKey). */
  privateKey?: KeyObject;
  publicKey: KeyObject;
  keyId: string;
}

/** `SHA256:<base64>` of the public key's DER, as ssh-keygen -l prints fingerprints. */
export function keyIdOf(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return `SHA256:${createHash('sha256').update(der).digest('base64').replace(/=+$/, '')}`;
}

/** kbur key generate FILE: an Ed25519 private key (0600) and FILE.pub beside it; never overwrites. */
export async function generateSigningKey(file: string): Promise<{ keyId: string; publicFile: string }> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const publicFile = `${file}.pub`;
  try {
    // Both checked first, so that a refusal leaves no half of a new pair behind.
    for (const f of [file, publicFile]) {
      if (await pathExists(f)) throw Object.assign(new Error(`${f} exists`), { code: 'EEXIST', path: f });
    }
    await writeFile(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
    await writeFile(publicFile, publicKey.export({ type: 'spki', format: 'pem' }), { mode: 0o644, flag: 'wx' });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new KburError(
      code === 'EEXIST' ? 'FAILED_PRECONDITION' : 'INVALID_ARGUMENT',
      code === 'EEXIST'
        ? `${(err as NodeJS.ErrnoException).path ?? file} already exists; kbur never overwrites a key`
        : `cannot write ${file}: ${errorMessage(err)}`,
      { cause: err, hint: code === 'EEXIST' ? 'choose another file name, or move the old key aside first' : undefined },
    );
  }
  return { keyId: keyIdOf(publicKey), publicFile };
}

/** The keys kbur.yaml's signing names: the private key (its public half derived), or only a public key. */
export async function loadSigningKeys(signing: { key?: string; publicKey?: string }): Promise<SigningKeys> {
  const file = (signing.key ?? signing.publicKey)!;
  const field = signing.key ? 'signing.key' : 'signing.publicKey';
  let pem: string;
  try {
    pem = await readFile(file, 'utf8');
  } catch (err) {
    throw new KburError('INVALID_CONFIG', `${field} ${file} cannot be read: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`, {
      cause: err,
      hint: 'make a key with kbur key generate FILE; a host that only restores needs FILE.pub as signing.publicKey',
    });
  }
  try {
    const privateKey = signing.key ? createPrivateKey(pem) : undefined;
    const publicKey = privateKey ? createPublicKey(privateKey) : createPublicKey(pem);
    if (publicKey.asymmetricKeyType !== 'ed25519') throw new Error(`it is a ${publicKey.asymmetricKeyType} key, not Ed25519`);
    if (signing.key && signing.publicKey) {
      const other = createPublicKey(await readFile(signing.publicKey, 'utf8'));
      if (keyIdOf(other) !== keyIdOf(publicKey)) throw new Error(`signing.publicKey ${signing.publicKey} is not its public half`);
    }
    return { file, ...(privateKey ? { privateKey } : {}), publicKey, keyId: keyIdOf(publicKey) };
  } catch (err) {
    throw new KburError('INVALID_CONFIG', `${field} ${file} is not a usable Ed25519 key: ${errorMessage(err)}`, {
      cause: err,
      hint: 'make one with kbur key generate FILE',
    });
  }
}

/**
 * The repository with its manifests signed when written and checked when read: a manifest whose
 * signature is missing or does not check with the configured key is DATA_LOSS (exit 5), naming
 * the key, before anything uses it. Every other method is the repository's own (a Proxy, so that
 * methods added to Repository later pass through unchanged).
 */
export function signedRepository(inner: Repository, keys: SigningKeys): Repository {
  const own: Pick<Repository, 'createBackup' | 'readManifest'> = {
    createBackup: async (cluster, id) => signingWriter(await inner.createBackup(cluster, id), keys),
    readManifest: (cluster, id) => readSignedManifest(inner, keys, cluster, id),
  };
  if (!keys.privateKey) {
    own.createBackup = () =>
      Promise.reject(
        new KburError('INVALID_CONFIG', 'kbur.yaml has signing.publicKey but no signing.key: this host can check sets, not sign them', {
          hint: 'back up from the host that holds the private key (signing.key), or set signing.key here',
        }),
      );
  }
  return new Proxy(inner, {
    get(target, prop) {
      if (prop === 'createBackup' || prop === 'readManifest') return own[prop];
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

export function describeKey(keys: SigningKeys): string {
  return `${keys.keyId} (${keys.file})`;
}

function signingWriter(writer: BackupWriter, keys: SigningKeys): BackupWriter {
  return {
    id: writer.id,
    location: writer.location,
    artifact: (p) => writer.artifact(p),
    discard: (p) => writer.discard(p),
    writeManifest: async (manifest: Manifest) => {
      // The signature first: a backup is complete only when its manifest is, so a .sig alone means nothing.
      const sig = await writer.artifact(SIGNATURE_FILE);
      const body: z.infer<typeof signatureSchema> = {
        algorithm: 'ed25519',
        keyId: keys.keyId,
        publicKey: keys.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
        signedAt: new Date().toISOString(),
        signature: sign(null, Buffer.from(JSON.stringify(manifest)), keys.privateKey!).toString('base64'),
      };
      try {
        sig.stream.end(JSON.stringify(body, null, 2) + '\n');
        await sig.commit();
      } catch (err) {
        await sig.abort();
        throw err;
      }
      await writer.writeManifest(manifest);
    },
  };
}

/** The manifest as signed: read, checked against its signature with the configured key, then parsed. */
async function readSignedManifest(inner: Repository, keys: SigningKeys, cluster: string, id: string): Promise<Manifest> {
  await inner.readManifest(cluster, id); // its errors say best what is missing (no such backup, incomplete)
  const refuse = (why: string): KburError =>
    new KburError('DATA_LOSS', `backup ${id}: ${why}; signing is set (key ${describeKey(keys)}): refusing to use it`, {
      hint: 'someone may have changed the set: use another backup (kbur list), or check that kbur.yaml names the key backups are signed with',
    });
  let sigText: string;
  try {
    sigText = await text(await inner.openArtifact(cluster, id, SIGNATURE_FILE));
  } catch {
    throw refuse(`its manifest is not signed (no ${SIGNATURE_FILE})`);
  }
  const parsed = signatureSchema.safeParse(safeJson(sigText));
  if (!parsed.success) throw refuse(`${SIGNATURE_FILE} is not a kbur signature`);
  const value = safeJson(await text(await inner.openArtifact(cluster, id, 'manifest.json')));
  const good = verify(null, Buffer.from(JSON.stringify(value)), keys.publicKey, Buffer.from(parsed.data.signature, 'base64'));
  if (!good) {
    throw refuse(
      parsed.data.keyId === keys.keyId
        ? 'its manifest does not match its signature (changed after it was signed)'
        : `its manifest is signed by another key, ${parsed.data.keyId}`,
    );
  }
  // Through the one parser, which also brings a manifest of an older schema to the current one.
  try {
    return parseManifest(value, 'manifest.json');
  } catch {
    throw refuse('its signed manifest is not a valid kbur manifest');
  }
}

/** What a backup or a plan says about signatures. */
export function signatureNote(keys: SigningKeys | undefined): string {
  return keys
    ? `signed: manifests are signed and checked with key ${describeKey(keys)}`
    : 'unsigned: kbur.yaml has no signing key, so nothing proves this set was not changed since it was written (README "Signing")';
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}

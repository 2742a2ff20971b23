import { readFile } from 'node:fs/promises';
import { KburError } from './errors.js';

export interface TlsFiles {
  ca: string;
  cert: string;
  key: string;
}

export interface TlsMaterial {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** Reads CA, certificate and key; a missing or unreadable file is an INVALID_CONFIG naming it. */
export async function readTlsFiles(files: TlsFiles, where: string): Promise<TlsMaterial> {
  const read = async (key: keyof TlsFiles): Promise<Buffer> => {
    try {
      const data = await readFile(files[key]);
      if (!data.includes('-----BEGIN')) throw new Error('not a PEM file');
      return data;
    } catch (err) {
      throw new KburError('INVALID_CONFIG', `${where} tls.${key}: ${files[key]}: ${(err as Error).message}`, {
        cause: err,
        hint: 'point tls.ca, tls.cert and tls.key at readable PEM files',
      });
    }
  };
  const [ca, cert, key] = await Promise.all([read('ca'), read('cert'), read('key')]);
  return { ca, cert, key };
}

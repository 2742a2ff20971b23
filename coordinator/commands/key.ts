import { resolve } from 'node:path';
import { ExitCode } from '../exit-codes.js';
import { generateSigningKey } from '../repository/signing.js';
import type { GlobalOptions } from '../context.js';

/** kbur key generate FILE: a new Ed25519 signing key (FILE, 0600) and its public half (FILE.pub). */
export async function generate(opts: GlobalOptions & { file: string }, out: NodeJS.WritableStream = process.stdout): Promise<ExitCode> {
  const file = resolve(opts.file);
  const { keyId, publicFile } = await generateSigningKey(file);
  if (opts.json) {
    out.write(JSON.stringify({ key: file, publicKey: publicFile, keyId }, null, 2) + '\n');
    return ExitCode.OK;
  }
  out.write(
    [
      `signing key: ${file} (0600; keep it on the backup host only)`,
      `public key:  ${publicFile}`,
      `key id:      ${keyId}`,
      `next: set signing: {key: ${file}} in kbur.yaml; keep a copy of ${publicFile} (and the key id) off the repository:`,
      '      a host that only restores sets signing: {publicKey: FILE} with it',
    ].join('\n') + '\n',
  );
  return ExitCode.OK;
}

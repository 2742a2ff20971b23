import { readFile } from 'node:fs/promises';
import { KburError } from '../../shared/errors.js';

export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** An AWS shared-credentials file: the [default] profile (or $AWS_PROFILE's). Values never reach a message. */
export async function readCredentialsFile(file: string): Promise<Credentials> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new KburError('INVALID_CONFIG', `repository.credentialsFile ${file} cannot be read (${(err as NodeJS.ErrnoException).code})`, {
      cause: err,
      hint: 'point repository.credentialsFile to an AWS credentials file ([default] aws_access_key_id = ..., aws_secret_access_key = ...), readable by this user',
    });
  }
  const profile = process.env.AWS_PROFILE ?? 'default';
  const sections = new Map<string, Map<string, string>>();
  let current: Map<string, string> | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[\s*(?:profile\s+)?([^\]]+?)\s*\]$/.exec(line);
    if (section) {
      current = new Map();
      sections.set(section[1]!, current);
      continue;
    }
    const kv = /^([A-Za-z0-9_]+)\s*=\s*(.*)$/.exec(line);
    if (kv && current) current.set(kv[1]!.toLowerCase(), kv[2]!.trim());
  }
  const values = sections.get(profile);
  const hint = `the file needs a [${profile}] section with aws_access_key_id and aws_secret_access_key`;
  if (!values) throw new KburError('INVALID_CONFIG', `repository.credentialsFile ${file} has no [${profile}] profile`, { hint });
  const accessKeyId = values.get('aws_access_key_id');
  const secretAccessKey = values.get('aws_secret_access_key');
  const missing = [...(accessKeyId ? [] : ['aws_access_key_id']), ...(secretAccessKey ? [] : ['aws_secret_access_key'])];
  if (missing.length) {
    throw new KburError('INVALID_CONFIG', `repository.credentialsFile ${file}: [${profile}] has no ${missing.join(' and no ')}`, { hint });
  }
  const sessionToken = values.get('aws_session_token');
  return { accessKeyId: accessKeyId!, secretAccessKey: secretAccessKey!, ...(sessionToken ? { sessionToken } : {}) };
}

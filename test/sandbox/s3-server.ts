/**
 * The S3-compatible server of the sandbox, run as its own process so that a test can kill it
 * mid-upload: fauxqs (npm), its objects and multipart uploads kept as files under --dir, so that
 * a restarted server finds them. fauxqs checks no signature; with --credentials FILE (an AWS
 * credentials file) every request must be signed (SigV4) with those keys, as on a real server:
 * anything else gets 403 InvalidAccessKeyId or SignatureDoesNotMatch.
 *
 *   node dist/test/sandbox/s3-server.js --host 127.0.0.20 --port 0 --dir DIR --bucket NAME [--credentials FILE] [--conditional-puts]
 *
 * fauxqs ignores If-None-Match on PUT; with --conditional-puts the server honours `If-None-Match: *`
 * as AWS S3 does: 412 when the key exists, 409 while another conditional PUT of it is in flight.
 *
 * Prints one JSON line {"listening": PORT} on stdout when it accepts requests; fauxqs's own
 * request log (JSON lines, no headers) follows on stdout.
 */
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import { existsSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SignatureV4 } from '@smithy/signature-v4';
import { startFauxqs } from 'fauxqs';
import { readCredentialsFile } from '../../coordinator/repository/s3-credentials.js';

const { values } = parseArgs({
  options: {
    host: { type: 'string' },
    port: { type: 'string', default: '0' },
    dir: { type: 'string' },
    bucket: { type: 'string' },
    credentials: { type: 'string' },
    'conditional-puts': { type: 'boolean', default: false },
  },
});
const host = values.host;
if (!host || !values.dir)
  throw new Error('usage: s3-server --host ADDR [--port N] --dir DIR [--bucket NAME] [--credentials FILE] [--conditional-puts]');

// fauxqs listens on 0.0.0.0 whatever its options say; the sandbox keeps to its own loopback address.
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (this: net.Server, ...args: unknown[]) {
  const first = args[0] as net.ListenOptions | undefined;
  if (first && typeof first === 'object' && first.host === '0.0.0.0') args[0] = { ...first, host };
  return (listen as (...a: unknown[]) => net.Server).apply(this, args);
} as typeof listen;

// Installed first, so that it runs after the signature check.
if (values['conditional-puts']) honourIfNoneMatch(values.dir);
if (values.credentials) requireSignatures(await readCredentialsFile(values.credentials));

const server = await startFauxqs({ host, port: Number(values.port), logger: true, s3StorageDir: values.dir });
if (values.bucket) server.createBucket(values.bucket);
process.stdout.write(JSON.stringify({ listening: server.port }) + '\n');
const stop = (): void => void server.stop().finally(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);

/** S3's error answer, before fauxqs sees the request. */
function refuse(req: http.IncomingMessage, res: http.ServerResponse, status: number, code: string): void {
  res.writeHead(status, { 'content-type': 'application/xml' });
  res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${code}</Message></Error>`);
  req.resume();
}

/** PUT If-None-Match: * of a key that exists gets 412; of a key another such PUT is writing, 409. */
function honourIfNoneMatch(storeDir: string): void {
  const writing = new Set<string>();
  const emit = http.Server.prototype.emit as (this: http.Server, event: string, ...args: unknown[]) => boolean;
  http.Server.prototype.emit = function (this: http.Server, event: string, ...args: unknown[]) {
    const [req, res] = args as [http.IncomingMessage, http.ServerResponse];
    if (event !== 'request' || req.method !== 'PUT' || req.headers['if-none-match'] !== '*') return emit.call(this, event, ...args);
    const url = new URL(req.url ?? '/', 'http://placeholder');
    // Path style: /<bucket>/<key>; a part upload (uploadId) is not a conditional write.
    const [, bucket, ...key] = url.pathname.split('/').map(decodeURIComponent);
    if (url.searchParams.has('uploadId') || !bucket || key.length === 0) return emit.call(this, event, ...args);
    const id = `${bucket}/${key.join('/')}`;
    if (writing.has(id)) {
      refuse(req, res, 409, 'ConditionalRequestConflict');
      return true;
    }
    if (existsSync(join(storeDir, 'buckets', bucket, 'objects', `${key.join('/')}.data`))) {
      refuse(req, res, 412, 'PreconditionFailed');
      return true;
    }
    writing.add(id);
    res.once('close', () => writing.delete(id));
    return emit.call(this, event, ...args);
  } as typeof http.Server.prototype.emit;
}

/** Answers every request not signed with `keys` with S3's 403, before fauxqs sees it. */
function requireSignatures(keys: { accessKeyId: string; secretAccessKey: string }): void {
  const emit = http.Server.prototype.emit as (this: http.Server, event: string, ...args: unknown[]) => boolean;
  http.Server.prototype.emit = function (this: http.Server, event: string, ...args: unknown[]) {
    if (event !== 'request') return emit.call(this, event, ...args);
    const [req, res] = args as [http.IncomingMessage, http.ServerResponse];
    void signatureProblem(req, keys).then((problem) => {
      if (!problem) return emit.call(this, event, ...args);
      refuse(req, res, 403, problem);
    });
    return true;
  } as typeof http.Server.prototype.emit;
}

/** Recomputes the request's SigV4 signature from the headers it says it signed. */
async function signatureProblem(
  req: http.IncomingMessage,
  keys: { accessKeyId: string; secretAccessKey: string },
): Promise<'InvalidAccessKeyId' | 'SignatureDoesNotMatch' | undefined> {
  const auth =
    /^AWS4-HMAC-SHA256 Credential=([^/]+)\/\d{8}\/([^/]+)\/s3\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]+)$/.exec(
      req.headers.authorization ?? '',
    );
  if (!auth) return 'SignatureDoesNotMatch';
  const [, accessKeyId, region, signedHeaders, signature] = auth;
  if (accessKeyId !== keys.accessKeyId) return 'InvalidAccessKeyId';
  const url = new URL(req.url ?? '/', 'http://placeholder');
  const query: Record<string, string | string[]> = {};
  for (const [k, v] of url.searchParams) query[k] = k in query ? [query[k]!].flat().concat(v) : v;
  const headers: Record<string, string> = {};
  for (const name of signedHeaders!.split(';')) headers[name] = String(req.headers[name] ?? '');
  const date = headers['x-amz-date'] ?? '';
  const signingDate = new Date(date.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'));
  const signer = new SignatureV4({
    credentials: keys,
    region: region!,
    service: 's3',
    sha256: Sha256,
    uriEscapePath: false,
    applyChecksum: false,
  });
  const signed = await signer.sign(
    { method: req.method ?? 'GET', protocol: 'http:', hostname: url.hostname, path: url.pathname, query, headers },
    { signingDate, signableHeaders: new Set(Object.keys(headers)) },
  );
  return String(signed.headers.authorization).endsWith(`Signature=${signature}`) ? undefined : 'SignatureDoesNotMatch';
}

/** The hash SignatureV4 asks for: sha256, or HMAC-sha256 when given a secret. */
class Sha256 {
  private readonly hash: Hash | Hmac;
  constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.hash.update(bytes(data));
  }
  digest(): Promise<Uint8Array> {
    return Promise.resolve(this.hash.digest());
  }
}

function bytes(data: string | ArrayBuffer | ArrayBufferView): string | Uint8Array {
  if (typeof data === 'string') return data;
  return ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);
}

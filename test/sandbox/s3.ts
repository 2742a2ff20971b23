import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SERVER_BIN = fileURLToPath(new URL('./s3-server.js', import.meta.url));
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
/** fauxqs's file store: <key>.data holds an object's bytes, <key>.meta.json its metadata. */
const DATA = '.data';

/**
 * A real S3-compatible server (fauxqs, from npm) on a loopback address of the sandbox's network,
 * as its own process: `kill()` is a server that dies mid-upload, `restart()` the same server back
 * with what it had stored. Objects live as files under `<dir>/store/buckets/<bucket>/objects/`,
 * multipart uploads in progress under `<dir>/store/_multipart/`.
 *
 * The server takes only requests signed with `credentials` (generated for each server, so that a
 * test can look for them where they must not be); fauxqs itself checks no signature, s3-server.ts does.
 */
export interface S3Server {
  endpoint: string;
  host: string;
  port: number;
  bucket: string;
  /** Where the server keeps its objects. */
  storeDir: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** An AWS shared-credentials file holding `credentials`, mode 0600. */
  credentialsFile: string;
  /** Everything the server printed (its request log), across restarts. */
  log(): string;
  /** Resolves when the server's log (past its first `after` characters) matches, e.g. /partNumber=1&/ once a part arrives. */
  waitForLog(pattern: RegExp, opts?: { after?: number; timeoutMs?: number }): Promise<void>;
  /** Multipart uploads the server holds that were neither completed nor aborted. */
  pendingMultipartUploads(): Promise<string[]>;
  /** Every object the server stores in the bucket: its key, its bytes' file and its metadata's file. */
  objects(): Promise<{ key: string; file: string; metaFile: string }[]>;
  /** SIGKILL: the server dies at once, mid-request. */
  kill(): Promise<void>;
  /** Starts the server again on the same address and port, with what it had stored. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startS3Server(opts: {
  dir: string;
  bucket?: string;
  network?: string;
  /** Honour PUT If-None-Match: * as AWS S3 does (fauxqs alone ignores it). */
  conditionalPuts?: boolean;
}): Promise<S3Server> {
  const network = opts.network ?? process.env.KBUR_SANDBOX_NETWORK ?? '127.0.0';
  const host = `${network}.20`;
  const bucket = opts.bucket ?? 'kbur-backups';
  const storeDir = join(opts.dir, 'store');
  await mkdir(storeDir, { recursive: true, mode: 0o700 });
  const credentials = {
    accessKeyId: `KBURTEST${randomBytes(6).toString('hex').toUpperCase()}`,
    secretAccessKey: randomBytes(30).toString('base64url'),
  };
  const credentialsFile = join(opts.dir, 'credentials');
  await writeFile(
    credentialsFile,
    `[default]\naws_access_key_id = ${credentials.accessKeyId}\naws_secret_access_key = ${credentials.secretAccessKey}\n`,
    { mode: 0o600 },
  );

  let output = '';
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  const waiters = new Set<() => void>();

  async function start(port: number): Promise<number> {
    const args = [
      ...['--host', host, '--port', String(port), '--dir', storeDir, '--bucket', bucket, '--credentials', credentialsFile],
      ...(opts.conditionalPuts ? ['--conditional-puts'] : []),
    ];
    const c = spawn(process.execPath, [SERVER_BIN, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = c;
    exited = new Promise((resolve) => c.once('close', () => resolve()));
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`S3 server on ${host} not ready after ${READY_TIMEOUT_MS} ms:\n${output}`)),
        READY_TIMEOUT_MS,
      );
      const onData = (d: Buffer): void => {
        output += d.toString();
        const ready = /\{"listening":(\d+)\}/.exec(output);
        if (ready) {
          clearTimeout(timer);
          resolve(Number(ready[1]));
        }
        for (const w of waiters) w();
      };
      c.stdout!.on('data', onData);
      c.stderr!.on('data', onData);
      c.once('close', (code) => {
        clearTimeout(timer);
        reject(new Error(`S3 server exited with ${code} before it was ready:\n${output}`));
      });
    });
  }

  const port = await start(0);
  output = output.replace(/\{"listening":\d+\}\n?/, '');
  const endpoint = `http://${host}:${port}`;

  const stopWith = async (signal: NodeJS.Signals): Promise<void> => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    const killer = setTimeout(() => child?.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(killer);
  };

  return {
    endpoint,
    host,
    port,
    bucket,
    storeDir,
    credentials,
    credentialsFile,
    log: () => output,
    waitForLog: (pattern, { after = 0, timeoutMs = 60_000 } = {}) =>
      new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (!pattern.test(output.slice(after))) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`S3 server log never matched ${pattern}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      }),
    pendingMultipartUploads: async () => readdir(join(storeDir, '_multipart')).catch(() => []),
    objects: async () => {
      const root = join(storeDir, 'buckets', bucket, 'objects');
      const entries = await readdir(root, { recursive: true, withFileTypes: true }).catch(() => []);
      return entries
        .filter((e) => e.isFile() && e.name.endsWith(DATA))
        .map((e) => {
          const file = join(e.parentPath, e.name);
          return { key: file.slice(root.length + 1, -DATA.length), file, metaFile: `${file.slice(0, -DATA.length)}.meta.json` };
        });
    },
    kill: () => stopWith('SIGKILL'),
    restart: async () => {
      await stopWith('SIGTERM');
      await start(port);
    },
    stop: () => stopWith('SIGTERM'),
  };
}

/** kbur.yaml's `repository` for this server. */
export function s3Repository(s3: S3Server, prefix = 'kbur'): Record<string, unknown> {
  return {
    type: 's3',
    bucket: s3.bucket,
    prefix,
    endpoint: s3.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentialsFile: s3.credentialsFile,
  };
}

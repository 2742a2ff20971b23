/**
 * The S3-compatible server of the sandbox, run as its own process so that a test can kill it
 * mid-upload: fauxqs (npm), its objects and multipart uploads kept as files under --dir, so that
 * a restarted server finds them.
 *
 *   node dist/test/sandbox/s3-server.js --host 127.0.0.20 --port 0 --dir DIR --bucket NAME
 *
 * Prints one JSON line {"listening": PORT} on stdout when it accepts requests; fauxqs's own
 * request log (JSON lines, no headers) follows on stdout.
 */
import net from 'node:net';
import { parseArgs } from 'node:util';
import { startFauxqs } from 'fauxqs';

const { values } = parseArgs({
  options: { host: { type: 'string' }, port: { type: 'string', default: '0' }, dir: { type: 'string' }, bucket: { type: 'string' } },
});
const host = values.host;
if (!host || !values.dir) throw new Error('usage: s3-server --host ADDR [--port N] --dir DIR [--bucket NAME]');

// fauxqs listens on 0.0.0.0 whatever its options say; the sandbox keeps to its own loopback address.
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (this: net.Server, ...args: unknown[]) {
  const first = args[0] as net.ListenOptions | undefined;
  if (first && typeof first === 'object' && first.host === '0.0.0.0') args[0] = { ...first, host };
  return (listen as (...a: unknown[]) => net.Server).apply(this, args);
} as typeof listen;

const server = await startFauxqs({ host, port: Number(values.port), logger: true, s3StorageDir: values.dir });
if (values.bucket) server.createBucket(values.bucket);
process.stdout.write(JSON.stringify({ listening: server.port }) + '\n');
const stop = (): void => void server.stop().finally(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);

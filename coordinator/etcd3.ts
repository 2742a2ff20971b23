import { createRequire } from 'node:module';

/**
 * The etcd3 client library, loaded when a command first needs it: it reads its .proto files from
 * its own folder at run time, so it stays out of the kbur bundle, and the other commands start
 * without it. (A dynamic import() is not available inside the launcher's cached script.)
 */
export function etcd3(): typeof import('etcd3') {
  return createRequire(import.meta.url)('etcd3') as typeof import('etcd3');
}

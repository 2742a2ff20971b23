import { once } from 'node:events';
import { mkdir, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { KburError } from '../shared/errors.js';
import { AtomicFile, StreamDigest } from '../shared/streams.js';

/** A client stream into the agent: a header, then the bytes. */
export type UploadMessage<H> = { kind?: { $case: 'header'; value: H } | { $case: 'data'; value: Buffer } | undefined };

/** The header an upload must start with, and an iterator over what follows it. */
export async function uploadHeader<H>(
  messages: AsyncIterable<UploadMessage<H>>,
  what: string,
): Promise<{ header: H; rest: AsyncIterator<UploadMessage<H>> }> {
  const rest = messages[Symbol.asyncIterator]();
  const first = await rest.next();
  const header = !first.done && first.value.kind?.$case === 'header' ? first.value.kind.value : undefined;
  if (!header) throw new KburError('INVALID_ARGUMENT', `${what} must start with a header`);
  return { header, rest };
}

/**
 * Receives the bytes of an upload into `dir`/`name`. The file is kept only when size and sha256
 * are those announced and, for a snapshot, etcd's own integrity hash holds; otherwise nothing
 * stays on disk.
 */
export async function receiveFile(
  announced: { size: number; sha256: string },
  rest: AsyncIterator<UploadMessage<unknown>>,
  opts: { dir: string; name: string; snapshot: boolean; signal: AbortSignal },
): Promise<string> {
  if (!/^[0-9a-f]{64}$/.test(announced.sha256) || announced.size <= 0)
    throw new KburError('INVALID_ARGUMENT', 'an upload header needs a size > 0 and a sha256');
  await mkdir(opts.dir, { recursive: true, mode: 0o700 });
  const fs = await statfs(opts.dir);
  if (fs.bavail * fs.bsize < announced.size) {
    throw new KburError(
      'FAILED_PRECONDITION',
      `not enough free space in ${opts.dir} for ${announced.size} bytes (${fs.bavail * fs.bsize} free)`,
      { hint: "free space in the agent's stateDir or point stateDir elsewhere" },
    );
  }
  const path = join(opts.dir, opts.name);
  const file = new AtomicFile(path);
  const digest = new StreamDigest();
  try {
    for (let next = await rest.next(); !next.done; next = await rest.next()) {
      opts.signal.throwIfAborted();
      const kind = next.value.kind;
      if (kind?.$case !== 'data') throw new KburError('INVALID_ARGUMENT', 'an upload sent a second header');
      digest.update(kind.value);
      if (digest.size > announced.size)
        throw new KburError('DATA_LOSS', `${opts.name} is longer than the announced ${announced.size} bytes`);
      if (!file.stream.write(kind.value)) await once(file.stream, 'drain', { signal: opts.signal });
    }
    const integrity = opts.snapshot ? digest.snapshotIntegrityError() : null;
    if (integrity) throw integrity;
    const sha256 = digest.sha256();
    if (digest.size !== announced.size || sha256 !== announced.sha256) {
      throw new KburError(
        'DATA_LOSS',
        `${opts.name} arrived with ${digest.size} bytes and sha256 ${sha256}; expected ${announced.size} bytes with sha256 ${announced.sha256}`,
      );
    }
    await file.commit();
  } catch (err) {
    await file.abort();
    throw err;
  }
  return path;
}

import { once } from 'node:events';
import { mkdir, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import type { StageSnapshotRequest, StageSnapshotResponse } from '../../proto/gen/kbur/v1/agent.js';
import { KburError } from '../../shared/errors.js';
import { AtomicFile, StreamDigest, checkSnapshotFile } from '../../shared/streams.js';
import type { AgentState } from '../state.js';
import { stageLocalCopy } from '../local-snapshots.js';
import { readRecord, restoreDir, writeRecord } from './record.js';

export interface UploadHeader {
  restoreId: string;
  size: number;
  sha256: string;
}

type UploadMessage<H> = { kind?: { $case: 'header'; value: H } | { $case: 'data'; value: Buffer } | undefined };

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

/** An upload for a restore (a header with its restore id, then bytes) into that restore's folder of the state dir. */
export async function receiveUpload(
  s: AgentState,
  messages: AsyncIterable<UploadMessage<UploadHeader>>,
  opts: { name: string; snapshot: boolean; signal: AbortSignal },
): Promise<UploadHeader & { path: string }> {
  const { header, rest } = await uploadHeader(messages, 'an upload (restore id, size, sha256)');
  const dir = restoreDir(s.config.stateDir, header.restoreId);
  return { ...header, path: await receiveFile(header, rest, { ...opts, dir }) };
}

/**
 * Stages the snapshot of a restore in the state dir, checked on arrival: uploaded, or taken from
 * the copy this node keeps (header.localCopy), reread and checked against the announced sha256.
 */
export async function stageSnapshot(
  s: AgentState,
  messages: AsyncIterable<StageSnapshotRequest>,
  signal: AbortSignal,
): Promise<StageSnapshotResponse> {
  const { header, rest } = await uploadHeader(messages, 'StageSnapshot (restore id, size, sha256)');
  const dir = restoreDir(s.config.stateDir, header.restoreId);
  const path = header.localCopy
    ? await stageLocalCopy(s, header.localCopy, header, join(dir, 'snapshot.db'), signal)
    : await receiveFile(header, rest, { dir, name: 'snapshot.db', snapshot: true, signal });
  const record = await readRecord(s.config.stateDir, header.restoreId);
  record.staged = { path, size: header.size, sha256: header.sha256 };
  await writeRecord(s.config.stateDir, record);
  return { path, size: header.size, sha256: header.sha256 };
}

/** Rereads the staged copy: the last check before anything is stopped. */
export async function verifyStaged(s: AgentState, restoreId: string): Promise<StageSnapshotResponse> {
  const record = await readRecord(s.config.stateDir, restoreId);
  if (!record.staged)
    throw new KburError('FAILED_PRECONDITION', `no snapshot staged for restore ${restoreId} on this node`, {
      hint: 'kbur restore stages it first',
    });
  const got = await checkSnapshotFile(record.staged.path, record.staged, 'staged snapshot', {
    hint: "check this node's disk; start a new restore; nothing was stopped",
  });
  return { path: record.staged.path, size: got.size, sha256: got.sha256 };
}

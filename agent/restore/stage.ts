import { once } from 'node:events';
import { mkdir, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import type { StageSnapshotRequest, StageSnapshotResponse } from '../../proto/gen/kbur/v1/agent.js';
import { KburError } from '../../shared/errors.js';
import { AtomicFile, StreamDigest, digestFile } from '../../shared/streams.js';
import type { AgentState } from '../state.js';
import { readRecord, restoreDir, writeRecord } from './record.js';

export interface UploadHeader {
  restoreId: string;
  size: number;
  sha256: string;
}

/**
 * Receives an upload (a header, then bytes) into `name` in the restore's folder of the state dir.
 * It is kept only when size and sha256 are those announced and, for a snapshot, etcd's own
 * integrity hash holds; otherwise nothing stays on disk.
 */
export async function receiveUpload(
  s: AgentState,
  messages: AsyncIterable<{ kind?: { $case: 'header'; value: UploadHeader } | { $case: 'data'; value: Buffer } | undefined }>,
  opts: { name: string; snapshot: boolean; signal: AbortSignal },
): Promise<UploadHeader & { path: string }> {
  const iterator = messages[Symbol.asyncIterator]();
  const first = await iterator.next();
  const header = !first.done && first.value.kind?.$case === 'header' ? first.value.kind.value : undefined;
  if (!header) throw new KburError('INVALID_ARGUMENT', 'an upload must start with a header (restore id, size, sha256)');
  if (!/^[0-9a-f]{64}$/.test(header.sha256) || header.size <= 0)
    throw new KburError('INVALID_ARGUMENT', 'an upload header needs a size > 0 and a sha256');
  const dir = restoreDir(s.config.stateDir, header.restoreId);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const fs = await statfs(dir);
  if (fs.bavail * fs.bsize < header.size) {
    throw new KburError('FAILED_PRECONDITION', `not enough free space in ${dir} for ${header.size} bytes (${fs.bavail * fs.bsize} free)`, {
      hint: "free space in the agent's stateDir or point stateDir elsewhere",
    });
  }
  const path = join(dir, opts.name);
  const file = new AtomicFile(path);
  const digest = new StreamDigest();
  try {
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
      opts.signal.throwIfAborted();
      const kind = next.value.kind;
      if (kind?.$case !== 'data') throw new KburError('INVALID_ARGUMENT', 'an upload sent a second header');
      digest.update(kind.value);
      if (digest.size > header.size) throw new KburError('DATA_LOSS', `${opts.name} is longer than the announced ${header.size} bytes`);
      if (!file.stream.write(kind.value)) await once(file.stream, 'drain', { signal: opts.signal });
    }
    const integrity = opts.snapshot ? digest.snapshotIntegrityError() : null;
    if (integrity) throw integrity;
    const sha256 = digest.sha256();
    if (digest.size !== header.size || sha256 !== header.sha256) {
      throw new KburError(
        'DATA_LOSS',
        `${opts.name} arrived with ${digest.size} bytes and sha256 ${sha256}; expected ${header.size} bytes with sha256 ${header.sha256}`,
      );
    }
    await file.commit();
  } catch (err) {
    await file.abort();
    throw err;
  }
  return { ...header, path };
}

/** Stages the snapshot of a restore in the state dir, checked on arrival. */
export async function stageSnapshot(
  s: AgentState,
  messages: AsyncIterable<StageSnapshotRequest>,
  signal: AbortSignal,
): Promise<StageSnapshotResponse> {
  const got = await receiveUpload(s, messages, { name: 'snapshot.db', snapshot: true, signal });
  const record = await readRecord(s.config.stateDir, got.restoreId);
  record.staged = { path: got.path, size: got.size, sha256: got.sha256 };
  await writeRecord(s.config.stateDir, record);
  return { path: got.path, size: got.size, sha256: got.sha256 };
}

/** Rereads the staged copy: the last check before anything is stopped. */
export async function verifyStaged(s: AgentState, restoreId: string): Promise<StageSnapshotResponse> {
  const record = await readRecord(s.config.stateDir, restoreId);
  if (!record.staged)
    throw new KburError('FAILED_PRECONDITION', `no snapshot staged for restore ${restoreId} on this node`, {
      hint: 'kbur restore stages it first',
    });
  let got;
  try {
    got = await digestFile(record.staged.path, { snapshot: true });
  } catch (err) {
    throw new KburError('DATA_LOSS', `staged snapshot ${record.staged.path} is damaged: ${(err as Error).message}`, {
      cause: err,
      hint: 'start a new restore; nothing was stopped',
    });
  }
  if (got.size !== record.staged.size || got.sha256 !== record.staged.sha256) {
    throw new KburError(
      'DATA_LOSS',
      `staged snapshot ${record.staged.path} changed on disk: sha256 ${got.sha256}, staged as ${record.staged.sha256}`,
      {
        hint: "check this node's disk; start a new restore; nothing was stopped",
      },
    );
  }
  return { path: record.staged.path, size: got.size, sha256: got.sha256 };
}

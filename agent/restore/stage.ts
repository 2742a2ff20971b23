import { join } from 'node:path';
import type { StageSnapshotRequest, StageSnapshotResponse } from '../../proto/gen/kbur/v1/agent.js';
import { KburError } from '../../shared/errors.js';
import { checkSnapshotFile } from '../../shared/streams.js';
import type { AgentState } from '../state.js';
import { stageLocalCopy } from '../local-snapshots.js';
import { receiveFile, uploadHeader, type UploadMessage } from '../upload.js';
import { readRecord, restoreDir, writeRecord } from './record.js';

export interface UploadHeader {
  restoreId: string;
  size: number;
  sha256: string;
  /** RestoreKubernetesDir only: node addresses to change in the archive (kbur restore --to). */
  readdress?: { from: string; to: string }[];
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

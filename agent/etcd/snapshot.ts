import type { SnapshotEtcdResponse } from '../../proto/gen/kbur/v1/agent.js';
import { StreamDigest } from '../../shared/streams.js';
import type { LocalEtcd } from './member.js';

/**
 * The SnapshotEtcd stream: header, the snapshot's bytes, then a trailer with size and sha256.
 * The trailer is sent only when etcd's own integrity hash held; otherwise the stream fails with
 * DATA_LOSS and the caller must not keep what it received.
 */
export async function* snapshotMessages(etcd: LocalEtcd, signal: AbortSignal): AsyncGenerator<SnapshotEtcdResponse> {
  const { header, data, cancel } = await etcd.snapshot(signal);
  try {
    yield { kind: { $case: 'header', value: header } };
    const digest = new StreamDigest();
    // etcd's own 32 KiB pieces, passed on as they are: regrouping them costs a copy of every byte.
    for await (const chunk of data) {
      digest.update(chunk);
      yield { kind: { $case: 'data', value: chunk } };
    }
    const integrity = digest.snapshotIntegrityError();
    if (integrity) throw integrity;
    yield { kind: { $case: 'trailer', value: { size: digest.size, sha256: digest.sha256() } } };
  } finally {
    cancel();
  }
}

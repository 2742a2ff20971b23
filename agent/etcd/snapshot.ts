import type { SnapshotEtcdResponse } from '../../proto/gen/kbur/v1/agent.js';
import { StreamDigest, rechunk } from '../../shared/streams.js';
import type { LocalEtcd } from './member.js';

const MESSAGE_SIZE = 1 << 20;

/**
 * The SnapshotEtcd stream: header, the snapshot's bytes, then a trailer with size and sha256.
 * The trailer is sent only when etcd's own integrity hash held; otherwise the stream fails with
 * DATA_LOSS and the caller must not keep what it received.
 */
export async function* snapshotMessages(etcd: LocalEtcd, signal: AbortSignal): AsyncGenerator<SnapshotEtcdResponse> {
  const { header, data } = await etcd.snapshot(signal);
  try {
    yield { kind: { $case: 'header', value: header } };
    const digest = new StreamDigest();
    for await (const chunk of rechunk(data, MESSAGE_SIZE)) {
      digest.update(chunk);
      yield { kind: { $case: 'data', value: chunk } };
    }
    const integrity = digest.snapshotIntegrityError();
    if (integrity) throw integrity;
    yield { kind: { $case: 'trailer', value: { size: digest.size, sha256: digest.sha256() } } };
  } finally {
    data.destroy();
  }
}

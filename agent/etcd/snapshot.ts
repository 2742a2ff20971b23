import type { SnapshotEtcdResponse } from '../../proto/gen/kbur/v1/agent.js';
import type { LocalEtcd } from './member.js';

/**
 * The SnapshotEtcd stream: header, the snapshot's bytes as etcd sends them, then a trailer with
 * the size and the key count at the header's revision. Not hashed here: the coordinator checks what
 * it writes against etcd's own integrity hash and computes the sha256 it records, and TLS protects
 * the hop. Figure: a second pass here cost the agent a tenth of its CPU (backup ratio 1.53 -> 1.42).
 */
export async function* snapshotMessages(etcd: LocalEtcd, signal: AbortSignal): AsyncGenerator<SnapshotEtcdResponse> {
  const { header, keyCount, data, cancel } = await etcd.snapshot(signal);
  try {
    yield { kind: { $case: 'header', value: header } };
    let size = 0;
    // etcd's own 32 KiB pieces, passed on as they are: regrouping them costs a copy of every byte.
    for await (const chunk of data) {
      size += chunk.length;
      yield { kind: { $case: 'data', value: chunk } };
    }
    yield { kind: { $case: 'trailer', value: { size, sha256: '', keyCount: await keyCount } } };
  } finally {
    cancel();
  }
}

import type { ArchiveKubernetesResponse } from '../../proto/gen/kbur/v1/agent.js';
import { StreamDigest, rechunk } from '../../shared/streams.js';
import { archiveKubernetesDir } from './archive.js';

/** Small enough that the 16 messages grpc-js queues per stream stay a few MiB. */
const MESSAGE_SIZE = 256 << 10;

/** The ArchiveKubernetes stream: the tar's bytes, then a trailer with size, sha256 and what it holds. */
export async function* archiveMessages(dir: string, signal: AbortSignal): AsyncGenerator<ArchiveKubernetesResponse> {
  const archive = await archiveKubernetesDir(dir, signal);
  try {
    const digest = new StreamDigest();
    for await (const chunk of rechunk(archive.data, MESSAGE_SIZE)) {
      digest.update(chunk);
      yield { kind: { $case: 'data', value: chunk } };
    }
    yield {
      kind: {
        $case: 'trailer',
        value: {
          size: digest.size,
          sha256: digest.sha256(),
          fileCount: archive.fileCount(),
          kubeadmConfigFiles: archive.kubeadmConfigFiles,
          kubernetesDir: dir,
        },
      },
    };
  } finally {
    archive.data.destroy();
  }
}

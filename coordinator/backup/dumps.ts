import type { DumpPartHeader } from '../../proto/gen/kbur/v1/agent.js';
import { KburError, asKburError } from '../../shared/errors.js';
import { checkName, type Artifact, type Manifest } from '../../shared/manifest.js';
import { StreamDigest } from '../../shared/streams.js';
import type { AgentClient } from '../agent-client.js';
import { isRepositoryFull } from '../repository/full.js';
import type { BackupWriter } from '../repository/repository.js';
import { createSealed, type SealedArtifact, type SealSettings } from '../repository/seal.js';
import { commitIfWhole, stallWatch, writeChunk } from './receive.js';

/** Where a dump part goes in the backup set; the part's name and extension come from the agent, and are checked. */
export function dumpPath(node: string, profile: string, h: Pick<DumpPartHeader, 'name' | 'extension' | 'compression'>): string {
  const part = checkName('part', h.name, 'the agent sent a dump part name kbur does not write; nothing of it was kept');
  const ext = checkName('extension', h.extension, 'the agent sent a file extension kbur does not write; nothing of it was kept');
  return `dumps/${checkName('node', node)}/${checkName('profile', profile)}/${part}.${ext}${h.compression === 'gzip' ? '.gz' : ''}`;
}

/**
 * Runs one dump profile on its node and writes each part it streams as an artifact, committed
 * only when its trailer's size and sha256 match what was written. If any part fails, the whole
 * profile is Failed: the part in progress is aborted and the parts already written are left out
 * of the manifest (a partial dump is never taken as a good one).
 */
export async function runDumpProfile(opts: {
  agent: AgentClient;
  profile: string;
  writer: BackupWriter;
  seal: SealSettings;
  stallMs: number;
  signal: AbortSignal;
}): Promise<{ artifacts: Artifact[] } | { failure: Manifest['failures'][number] }> {
  const node = opts.agent.node.name;
  const artifacts: Artifact[] = [];
  let current: { header: DumpPartHeader; writer: SealedArtifact; digest: StreamDigest } | undefined;
  const stall = stallWatch(`dump ${opts.profile} on ${node}`, opts.stallMs, opts.signal);
  const signal = stall.signal;
  try {
    for await (const msg of opts.agent.runDump(opts.profile, signal)) {
      stall.touch();
      const kind = msg.kind;
      if (kind?.$case === 'part') {
        current = {
          header: kind.value,
          writer: await createSealed(
            opts.writer,
            dumpPath(node, opts.profile, kind.value),
            opts.seal,
            kind.value.compression === 'gzip' ? 'gzip' : 'none',
          ),
          digest: new StreamDigest(),
        };
      } else if (kind?.$case === 'data') {
        if (!current) throw new KburError('DATA_LOSS', `dump ${opts.profile} on ${node}: data before a part header`);
        current.digest.update(kind.value);
        await writeChunk(current.writer.stream, kind.value, signal);
      } else if (kind?.$case === 'partEnd') {
        if (!current) throw new KburError('DATA_LOSS', `dump ${opts.profile} on ${node}: a part trailer without its header`);
        const { header, writer, digest } = current;
        const sha256 = await commitIfWhole(writer, digest, kind.value, `dump ${opts.profile}/${header.name} on ${node}`);
        current = undefined;
        artifacts.push({
          kind: 'dump',
          node,
          ...writer.record({ size: digest.size, sha256 }),
          dump: {
            profile: opts.profile,
            part: header.name,
            type: header.type,
            tool: header.tool,
            toolVersion: header.toolVersion,
            command: header.command,
            rawBytes: kind.value.rawBytes,
            durationMs: kind.value.durationMs,
            stderrTail: kind.value.stderrTail.slice(-2000),
          },
        });
      }
    }
    if (current) throw new KburError('DATA_LOSS', `dump ${opts.profile}/${current.header.name} on ${node} ended without its trailer`);
    if (artifacts.length === 0) throw new KburError('DATA_LOSS', `dump ${opts.profile} on ${node} sent no part`);
    return { artifacts };
  } catch (err) {
    await current?.writer.abort();
    await Promise.all(artifacts.map((a) => opts.writer.discard(a.path)));
    if (isRepositoryFull(err)) throw err;
    const e = stall.reason() ?? asKburError(err);
    if (e.code === 'CANCELLED' && opts.signal.aborted) throw e;
    return { failure: { part: `dump/${node}/${opts.profile}`, message: e.message } };
  } finally {
    stall.stop();
  }
}

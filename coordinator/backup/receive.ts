import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { KburError } from '../../shared/errors.js';
import { StreamDigest } from '../../shared/streams.js';
import type { ArtifactWriter } from '../repository/repository.js';

/** What every artifact stream ends with: what the agent sent, by its own count. */
export interface Trailer {
  size: number;
  sha256: string;
}

export type ArtifactMessage<H, T extends Trailer> =
  { $case: 'header'; value: H } | { $case: 'data'; value: Buffer } | { $case: 'trailer'; value: T };

export interface Received<H, T> {
  header: H | undefined;
  trailer: T;
  size: number;
  sha256: string;
}

/**
 * Writes an agent's stream into an artifact and commits it only when it is whole: the trailer
 * arrived, size and sha256 of what was written match the agent's, and for a snapshot, etcd's own
 * integrity hash holds. Anything else aborts the artifact (no file under its final name) and throws.
 * A stream silent for `stallMs` is cancelled.
 */
export async function receiveArtifact<H, T extends Trailer>(opts: {
  messages: (signal: AbortSignal) => AsyncIterable<{ kind?: ArtifactMessage<H, T> | undefined }>;
  writer: ArtifactWriter;
  what: string;
  snapshot: boolean;
  stallMs: number;
  signal: AbortSignal;
  onBytes?: (n: number) => void;
  onHeader?: (header: H) => void;
}): Promise<Received<H, T>> {
  const stall = stallWatch(opts.what, opts.stallMs, opts.signal);
  const signal = stall.signal;
  const digest = new StreamDigest();
  let header: H | undefined;
  let trailer: T | undefined;
  const out = opts.writer.stream;
  try {
    for await (const msg of opts.messages(signal)) {
      stall.touch();
      const kind = msg.kind;
      if (!kind) continue;
      if (trailer) throw new KburError('DATA_LOSS', `${opts.what}: data after the trailer`);
      if (kind.$case === 'header') {
        header = kind.value;
        opts.onHeader?.(kind.value);
      } else if (kind.$case === 'data') {
        digest.update(kind.value);
        opts.onBytes?.(kind.value.length);
        await writeChunk(out, kind.value, signal);
      } else {
        trailer = kind.value;
      }
    }
    if (!trailer)
      throw new KburError('DATA_LOSS', `${opts.what}: the stream ended without its trailer after ${digest.size} bytes (truncated)`, {
        retryable: true,
      });
    if (opts.snapshot) {
      const integrity = digest.snapshotIntegrityError();
      if (integrity) throw integrity;
    }
    // A snapshot's trailer has no sha256: etcd's integrity hash, checked above, vouches for it end to end.
    const sha256 = await commitIfWhole(opts.writer, digest, trailer, opts.what, { agentHashed: !opts.snapshot });
    return { header, trailer, size: digest.size, sha256 };
  } catch (err) {
    await opts.writer.abort();
    throw stall.reason() ?? err;
  } finally {
    stall.stop();
  }
}

/**
 * Writes one chunk with backpressure. A write that failed (a full disk: ENOSPC) is thrown at the
 * next chunk or while waiting for drain, not found only at commit after the whole stream.
 */
export async function writeChunk(out: Writable, chunk: Buffer, signal: AbortSignal): Promise<void> {
  if (out.errored) throw out.errored;
  if (!out.write(chunk)) await once(out, 'drain', { signal });
}

/**
 * Commits an artifact when what was written is what the agent says it sent (size, and sha256 unless
 * the agent does not hash that stream); otherwise DATA_LOSS, and the caller aborts it. Returns the sha256.
 */
export async function commitIfWhole(
  writer: ArtifactWriter,
  digest: StreamDigest,
  trailer: Trailer,
  what: string,
  opts: { agentHashed: boolean } = { agentHashed: true },
): Promise<string> {
  const sha256 = digest.sha256();
  if (trailer.size !== digest.size || (opts.agentHashed && trailer.sha256 !== sha256)) {
    throw new KburError(
      'DATA_LOSS',
      `${what}: received ${digest.size} bytes with sha256 ${sha256}, the agent sent ${trailer.size} bytes with sha256 ${trailer.sha256}`,
    );
  }
  await writer.commit();
  return sha256;
}

/**
 * Gives up a stream that sends nothing for `ms`: its signal aborts (with an UNAVAILABLE naming
 * `what`) when the caller's does or when touch() was not called in time. One timer for the whole
 * stream: re-arming one per message costs more than the message.
 */
export function stallWatch(
  what: string,
  ms: number,
  outer: AbortSignal,
): { signal: AbortSignal; touch(): void; stop(): void; reason(): KburError | undefined } {
  const stall = new AbortController();
  let last = Date.now();
  const timer = setInterval(
    () => {
      if (Date.now() - last < ms) return;
      stall.abort(
        new KburError('UNAVAILABLE', `${what}: nothing received for ${Math.round(ms / 1000)} s`, {
          hint: "the agent or the tool behind it is stuck or the network dropped; see the agent's log (journalctl -u kbur-agent)",
        }),
      );
    },
    Math.min(1000, ms),
  );
  return {
    signal: AbortSignal.any([outer, stall.signal]),
    touch: () => (last = Date.now()),
    stop: () => clearInterval(timer),
    reason: () => (stall.signal.aborted ? (stall.signal.reason as KburError) : undefined),
  };
}

import { once } from 'node:events';
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
  const stall = new AbortController();
  const signal = AbortSignal.any([opts.signal, stall.signal]);
  // One timer for the whole stream: re-arming one per message costs more than the message.
  let lastMessage = Date.now();
  const timer = setInterval(
    () => {
      if (Date.now() - lastMessage >= opts.stallMs) stall.abort(stalled(opts.what, opts.stallMs));
    },
    Math.min(1000, opts.stallMs),
  );
  const digest = new StreamDigest();
  let header: H | undefined;
  let trailer: T | undefined;
  const out = opts.writer.stream;
  try {
    for await (const msg of opts.messages(signal)) {
      lastMessage = Date.now();
      const kind = msg.kind;
      if (!kind) continue;
      if (trailer) throw new KburError('DATA_LOSS', `${opts.what}: data after the trailer`);
      if (kind.$case === 'header') {
        header = kind.value;
        opts.onHeader?.(kind.value);
      } else if (kind.$case === 'data') {
        digest.update(kind.value);
        opts.onBytes?.(kind.value.length);
        if (!out.write(kind.value)) await once(out, 'drain', { signal });
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
    const sha256 = digest.sha256();
    if (trailer.size !== digest.size || trailer.sha256 !== sha256) {
      throw new KburError(
        'DATA_LOSS',
        `${opts.what}: received ${digest.size} bytes with sha256 ${sha256}, the agent sent ${trailer.size} bytes with sha256 ${trailer.sha256}`,
      );
    }
    await opts.writer.commit();
    return { header, trailer, size: digest.size, sha256 };
  } catch (err) {
    await opts.writer.abort();
    throw stall.signal.aborted ? stall.signal.reason : err;
  } finally {
    clearInterval(timer);
  }
}

function stalled(what: string, ms: number): KburError {
  return new KburError('UNAVAILABLE', `${what}: nothing received for ${Math.round(ms / 1000)} s`, {
    hint: "the agent or etcd is stuck or the network dropped; see the agent's log (journalctl -u kbur-agent)",
  });
}

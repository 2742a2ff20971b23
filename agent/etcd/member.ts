import { noop } from 'cockatiel';
import type { Client } from '@grpc/grpc-js';
import { Etcd3 } from 'etcd3';
import { KburError, errorMessage } from '../../shared/errors.js';
import { readTlsFiles, type TlsMaterial } from '../../shared/tls.js';
import type { EtcdMemberStatus, SnapshotHeader } from '../../proto/gen/kbur/v1/agent.js';
import type { EtcdSettings } from './discovery.js';
import { openSnapshotStream, snapshotChannel, type SnapshotPiece } from './snapshot-stream.js';

const STATUS_DEADLINE_MS = 5_000;

/** The etcd member on this node, reached over its own client TLS. */
export class LocalEtcd {
  private snapshots: Client | undefined;

  private constructor(
    readonly settings: EtcdSettings,
    private readonly client: Etcd3 | undefined,
    private readonly tls: TlsMaterial | undefined,
    /** Why there is no member on this node (reset, or not built yet); undefined when there is one. */
    readonly missing?: string,
  ) {}

  /** A node without an etcd member: every status says why; `settings` holds what is known of where it goes. */
  static missing(settings: EtcdSettings, reason: string): LocalEtcd {
    return new LocalEtcd(settings, undefined, undefined, reason);
  }

  static async open(settings: EtcdSettings): Promise<LocalEtcd> {
    const tls = await readTlsFiles({ ca: settings.ca, cert: settings.cert, key: settings.key }, 'etcd client');
    const client = new Etcd3({
      hosts: settings.endpoint,
      credentials: { rootCertificate: tls.ca, certChain: tls.cert, privateKey: tls.key },
      dialTimeout: STATUS_DEADLINE_MS,
      // One member, no retries and no circuit breaker: the caller decides what a failure means,
      // and a member that just came back must be usable at once.
      faultHandling: { host: () => noop, global: noop },
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + STATUS_DEADLINE_MS }),
      grpcOptions: {
        'grpc.max_receive_message_length': 64 << 20,
        // grpc's 1 s first reconnect backoff, growing to 2 min, would make a restore wait that long
        // for a member it just started: a local member is worth retrying every quarter second.
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 250,
      },
    });
    return new LocalEtcd(settings, client, tls);
  }

  close(): void {
    this.client?.close();
    this.snapshots?.close();
  }

  /** Status of the member; never throws: an unreachable member is `reachable: false` with the reason. */
  async status(opts: { keyCount?: boolean } = {}): Promise<EtcdMemberStatus> {
    const base = { endpoint: this.settings.endpoint, dataDir: this.settings.dataDir, name: this.settings.name };
    try {
      if (!this.client) throw new Error(this.missing);
      const [st, list, keyCount] = await Promise.all([
        this.client.maintenance.status(),
        this.client.cluster.memberList({ linearizable: false }),
        // Counting walks the whole index: only for node info, never for the probes that poll.
        opts.keyCount ? this.countKeys(0) : Promise.resolve(-1),
      ]);
      const memberId = hexId(st.header.member_id);
      return {
        ...base,
        reachable: true,
        error: '',
        memberId,
        version: st.version,
        leaderId: hexId(st.leader),
        isLeader: st.leader === st.header.member_id,
        dbSize: Number(st.dbSize),
        // etcd 3.4+; absent from older members' answers.
        dbSizeInUse: Number(st.dbSizeInUse ?? 0),
        revision: Number(st.header.revision),
        raftIndex: Number(st.raftIndex),
        raftTerm: Number(st.raftTerm),
        clusterId: hexId(st.header.cluster_id),
        keyCount,
        members: list.members.map((m) => ({
          id: hexId(m.ID),
          name: m.name,
          peerUrls: m.peerURLs,
          clientUrls: m.clientURLs,
          isLearner: Boolean(m.isLearner),
        })),
      };
    } catch (err) {
      return {
        ...base,
        reachable: false,
        error: errorMessage(err),
        memberId: '',
        version: '',
        leaderId: '',
        isLeader: false,
        dbSize: 0,
        dbSizeInUse: 0,
        revision: 0,
        raftIndex: 0,
        raftTerm: 0,
        clusterId: '',
        members: [],
        keyCount: -1,
      };
    }
  }

  /**
   * Starts a snapshot of this member. Resolves once etcd sent its first piece, with the header
   * (member, revision) and the snapshot's bytes, pulled at the reader's pace, and the number of
   * keys at that revision, counted meanwhile (-1 if the member cannot tell): counting walks etcd's
   * whole index, which must not hold back the first byte. The signal or cancel() ends the etcd stream.
   */
  async snapshot(
    signal: AbortSignal,
  ): Promise<{ header: SnapshotHeader; keyCount: Promise<number>; data: AsyncGenerator<Buffer>; cancel(): void }> {
    const endpoint = this.settings.endpoint;
    if (!this.tls) throw new KburError('UNAVAILABLE', `no etcd member on this node: ${this.missing}`);
    this.snapshots ??= snapshotChannel(endpoint, this.tls);
    const source = openSnapshotStream(this.snapshots);
    const cancel = (): void => source.cancel();
    signal.addEventListener('abort', cancel, { once: true });
    source.once('close', () => signal.removeEventListener('abort', cancel));
    const pieces: AsyncIterator<SnapshotPiece> = source[Symbol.asyncIterator]();
    // The member's status and etcd's first piece, asked at once; status never throws.
    const [member, firstOrError] = await Promise.all([this.status(), pieces.next().catch((err: unknown) => toEtcdError(err, endpoint))]);
    if (!member.reachable) {
      source.cancel();
      throw new KburError('UNAVAILABLE', `local etcd member ${endpoint} is not reachable: ${member.error}`, {
        hint: 'check that etcd runs on this node (crictl ps / systemctl status etcd)',
      });
    }
    if (firstOrError instanceof KburError) throw firstOrError;
    const first = firstOrError;
    if (first.done) throw new KburError('UNAVAILABLE', `etcd on ${endpoint} ended the snapshot stream before sending anything`);
    const revision = first.value.revision ?? member.revision;
    const keyCount = this.countKeys(revision);
    async function* data(): AsyncGenerator<Buffer> {
      try {
        yield first.value.blob;
        for (let next = await pieces.next(); !next.done; next = await pieces.next()) yield next.value.blob;
      } catch (err) {
        throw toEtcdError(err, endpoint);
      }
    }
    return { header: { member, revision, keyCount: 0 }, keyCount, data: data(), cancel };
  }

  /** Keys in the whole keyspace at a revision (0: the latest), read from this member only; -1 if it cannot tell. */
  private async countKeys(revision: number): Promise<number> {
    try {
      if (!this.client) return -1;
      const res = await this.client.kv.range({
        key: Buffer.from([0]),
        range_end: Buffer.from([0]),
        count_only: true,
        serializable: true,
        revision,
      });
      return Number(res.count);
    } catch {
      return -1;
    }
  }
}

function toEtcdError(err: unknown, endpoint: string): KburError {
  if (KburError.is(err)) return err;
  return new KburError('UNAVAILABLE', `etcd snapshot stream${endpoint ? ` from ${endpoint}` : ''} broke: ${errorMessage(err)}`, {
    cause: err,
  });
}

/** etcd3 gives uint64 ids as decimal strings; etcdctl and operators use hex. */
export function hexId(id: string | undefined): string {
  if (!id) return '';
  try {
    return BigInt(id).toString(16);
  } catch {
    return id;
  }
}

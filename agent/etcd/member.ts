import { Readable, Transform, type TransformCallback } from 'node:stream';
import { noop } from 'cockatiel';
import { Etcd3, type IResponseStream, type ISnapshotResponse } from 'etcd3';
import { KburError, errorMessage } from '../../shared/errors.js';
import { readTlsFiles } from '../../shared/tls.js';
import type { EtcdMemberStatus, SnapshotHeader } from '../../proto/gen/kbur/v1/agent.js';
import type { EtcdSettings } from './discovery.js';

const STATUS_DEADLINE_MS = 5_000;

/** The etcd member on this node, reached over its own client TLS. */
export class LocalEtcd {
  private constructor(
    readonly settings: EtcdSettings,
    private readonly client: Etcd3,
  ) {}

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
      grpcOptions: { 'grpc.max_receive_message_length': 64 << 20 },
    });
    return new LocalEtcd(settings, client);
  }

  close(): void {
    this.client.close();
  }

  /** Status of the member; never throws: an unreachable member is `reachable: false` with the reason. */
  async status(): Promise<EtcdMemberStatus> {
    const base = { endpoint: this.settings.endpoint, dataDir: this.settings.dataDir, name: this.settings.name };
    try {
      const [st, list, keyCount] = await Promise.all([
        this.client.maintenance.status(),
        this.client.cluster.memberList({ linearizable: false }),
        this.countKeys(0),
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
   * Starts a snapshot of this member. Resolves once etcd sent its first chunk, with the header
   * (member, revision, key count at that revision) and the snapshot bytes as a stream that
   * follows the reader's pace. The signal cancels the etcd stream.
   */
  async snapshot(signal: AbortSignal): Promise<{ header: SnapshotHeader; data: Readable }> {
    const member = await this.status();
    if (!member.reachable) {
      throw new KburError('UNAVAILABLE', `local etcd member ${this.settings.endpoint} is not reachable: ${member.error}`, {
        hint: 'check that etcd runs on this node (crictl ps / systemctl status etcd)',
      });
    }
    const source = (await this.client.maintenance.snapshot()) as IResponseStream<ISnapshotResponse> & Readable & { cancel(): void };
    const onAbort = (): void => source.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
    source.once('close', () => signal.removeEventListener('abort', onAbort));

    const first = await firstMessage(source);
    const revision = Number(first.header?.revision ?? member.revision);
    const keyCount = await this.countKeys(revision);
    const data = source.pipe(new BlobExtractor(first));
    source.once('error', (err) => data.destroy(toEtcdError(err, this.settings.endpoint)));
    return { header: { member, revision, keyCount }, data };
  }

  /** Keys in the whole keyspace at a revision (0: the latest), read from this member only; -1 if it cannot tell. */
  private async countKeys(revision: number): Promise<number> {
    try {
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

/** Turns etcd's snapshot messages into their bytes, starting with the one already read. */
class BlobExtractor extends Transform {
  constructor(private first: ISnapshotResponse | undefined) {
    super({ writableObjectMode: true, readableHighWaterMark: 1 << 20 });
  }

  override _transform(msg: ISnapshotResponse, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.first) {
      this.push(this.first.blob);
      this.first = undefined;
    }
    done(null, msg.blob);
  }

  override _flush(done: TransformCallback): void {
    if (this.first) this.push(this.first.blob);
    done();
  }
}

function firstMessage(source: Readable): Promise<ISnapshotResponse> {
  return new Promise((resolve, reject) => {
    const onData = (msg: ISnapshotResponse): void => {
      cleanup();
      source.pause();
      resolve(msg);
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(toEtcdError(err, ''));
    };
    const onEnd = (): void => {
      cleanup();
      reject(new KburError('UNAVAILABLE', 'etcd ended the snapshot stream before sending anything'));
    };
    const cleanup = (): void => {
      source.off('data', onData);
      source.off('error', onError);
      source.off('end', onEnd);
    };
    source.on('data', onData);
    source.once('error', onError);
    source.once('end', onEnd);
  });
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

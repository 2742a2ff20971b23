import { once } from 'node:events';
import {
  Metadata,
  credentials,
  type CallOptions,
  type ChannelCredentials,
  type ClientReadableStream,
  type ClientWritableStream,
  type ServiceError,
} from '@grpc/grpc-js';
import {
  type AgentServiceClient,
  type ArchiveKubernetesResponse,
  type GetNodeInfoResponse,
  type KeepSnapshotHeader,
  type LocalSnapshot,
  type PrepareRestoreRequest,
  type RestoreDumpHeader,
  type RunDumpResponse,
  type PrepareRestoreResponse,
  type RestoreEtcdMemberRequest,
  type RestoreStepResponse,
  type SnapshotEtcdResponse,
  type StageSnapshotHeader,
  type StageSnapshotResponse,
} from '../proto/gen/kbur/v1/agent.js';
import { AgentClientCtor } from '../shared/agent-service.js';
import { KburError, type ErrorCode } from '../shared/errors.js';
import { GRPC_CODE, META_CODE, META_HINT, fromMetadataText, status } from '../shared/grpc-status.js';
import type { TlsMaterial } from '../shared/tls.js';
import { wireCheckInterceptor } from '../shared/wire.js';

export interface NodeRef {
  name: string;
  agent: string;
}

const UNARY_DEADLINE_MS = 15_000;
/** A restore step may restore a multi-GB snapshot or wait for etcd to stop. */
const STEP_DEADLINE_MS = 30 * 60_000;

/** A client stream: a header, then data (StageSnapshotRequest, RestoreDumpRequest). */
type Upload<H> = { kind?: { $case: 'header'; value: H } | { $case: 'data'; value: Buffer } | undefined };

export type RestoreStepName = 'StopControlPlane' | 'StartEtcd' | 'StartControlPlane' | 'RollbackRestore';
const KBUR_CODES = new Set(Object.keys(GRPC_CODE));

/** One node's agent, over mTLS. Unary calls carry a deadline; streams end when the signal aborts. */
export class AgentClient {
  private readonly client: AgentServiceClient;

  constructor(
    readonly node: NodeRef,
    creds: ChannelCredentials,
  ) {
    this.client = new AgentClientCtor(node.agent, creds, {
      'grpc.max_receive_message_length': 16 << 20,
      'grpc.keepalive_time_ms': 30_000,
      // The 64 KiB default window stalls a stream on every round trip. 4 MiB covers 30 ms of a
      // gigabit link; more only piles up in the coordinator when it is the slower end (sealing
      // and uploading to S3: 8 MiB cost ~15 MiB of its peak RSS, measured).
      'grpc-node.flow_control_window': 4 << 20,
      interceptors: [wireCheckInterceptor(node.name)],
    });
  }

  static credentials(tls: TlsMaterial): ChannelCredentials {
    return credentials.createSsl(tls.ca, tls.key, tls.cert);
  }

  /**
   * With `countKeys`, etcd.keyCount holds the keys of the whole keyspace (etcd walks its whole index); else -1.
   * With `certificates`, the node's certificates and their expiry.
   */
  getNodeInfo(opts: { countKeys: boolean; certificates?: boolean }, deadlineMs = UNARY_DEADLINE_MS): Promise<GetNodeInfoResponse> {
    return this.unary(
      this.client.getNodeInfo.bind(this.client),
      { countKeys: opts.countKeys, certificates: Boolean(opts.certificates) },
      deadlineMs,
    );
  }

  prepareRestore(req: PrepareRestoreRequest): Promise<PrepareRestoreResponse> {
    return this.unary(this.client.prepareRestore.bind(this.client), req, UNARY_DEADLINE_MS * 4);
  }

  verifyStagedSnapshot(restoreId: string): Promise<StageSnapshotResponse> {
    return this.unary(this.client.verifyStagedSnapshot.bind(this.client), { restoreId }, STEP_DEADLINE_MS);
  }

  /** One restore step on this node; every step is idempotent on the agent, so a resume calls it again. */
  restoreStep(step: RestoreStepName, restoreId: string): Promise<RestoreStepResponse> {
    const fn = {
      StopControlPlane: this.client.stopControlPlane,
      StartEtcd: this.client.startEtcd,
      StartControlPlane: this.client.startControlPlane,
      RollbackRestore: this.client.rollbackRestore,
    }[step].bind(this.client);
    return this.unary(fn, { restoreId }, STEP_DEADLINE_MS);
  }

  restoreEtcdMember(req: RestoreEtcdMemberRequest): Promise<RestoreStepResponse> {
    return this.unary(this.client.restoreEtcdMember.bind(this.client), req, STEP_DEADLINE_MS);
  }

  /** Uploads a snapshot to the agent's state dir: header first, then the bytes at the pace HTTP/2 takes them. */
  stageSnapshot(header: StageSnapshotHeader, data: AsyncIterable<Buffer>, signal: AbortSignal): Promise<StageSnapshotResponse> {
    return this.upload(this.client.stageSnapshot.bind(this.client), header, data, signal);
  }

  /** Sends a backup's snapshot for the agent to keep as a local copy. */
  keepSnapshot(header: KeepSnapshotHeader, data: AsyncIterable<Buffer>, signal: AbortSignal): Promise<LocalSnapshot> {
    return this.upload(this.client.keepSnapshot.bind(this.client), header, data, signal);
  }

  /** Uploads the node's kubernetes dir archive, which the agent checks and puts in place. */
  restoreKubernetesDir(header: StageSnapshotHeader, data: AsyncIterable<Buffer>, signal: AbortSignal): Promise<RestoreStepResponse> {
    return this.upload(this.client.restoreKubernetesDir.bind(this.client), header, data, signal);
  }

  private async upload<Res, H>(
    start: (md: Metadata, opts: Partial<CallOptions>, cb: (err: ServiceError | null, res: Res) => void) => ClientWritableStream<Upload<H>>,
    header: H,
    data: AsyncIterable<Buffer>,
    signal: AbortSignal,
  ): Promise<Res> {
    let call: ClientWritableStream<Upload<H>> | undefined;
    const response = new Promise<Res>((resolve, reject) => {
      call = start(new Metadata(), {}, (err, res) => (err ? reject(this.fromStatus(err)) : resolve(res)));
    });
    // The agent may answer before it has every byte (it refuses the header, its disk is full):
    // then sending stops and its answer is the result. Until then nothing waits on the answer, so
    // it is handled here, or a refusal would be an unhandled rejection that kills kbur.
    const answered = new AbortController();
    response.then(
      () => answered.abort(),
      () => answered.abort(),
    );
    const sending = AbortSignal.any([signal, answered.signal]);
    const stream = call!;
    const onAbort = (): void => stream.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      stream.write({ kind: { $case: 'header', value: header } });
      for await (const chunk of data) {
        if (sending.aborted) break;
        if (!stream.write({ kind: { $case: 'data', value: chunk } })) await once(stream, 'drain', { signal: sending });
      }
      stream.end();
      return await response;
    } catch (err) {
      if (answered.signal.aborted && !signal.aborted) return await response;
      stream.cancel();
      await response.catch(() => undefined);
      throw signal.aborted ? signal.reason : err;
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  snapshotEtcd(signal: AbortSignal): AsyncIterable<SnapshotEtcdResponse> {
    return this.stream(this.client.snapshotEtcd({}), signal);
  }

  archiveKubernetes(signal: AbortSignal): AsyncIterable<ArchiveKubernetesResponse> {
    return this.stream(this.client.archiveKubernetes({}), signal);
  }

  runDump(profile: string, signal: AbortSignal): AsyncIterable<RunDumpResponse> {
    return this.stream(this.client.runDump({ profile }), signal);
  }

  /** Sends one dump part to the agent, which saves what is there, then drops, recreates and loads. */
  restoreDump(header: RestoreDumpHeader, data: AsyncIterable<Buffer>, signal: AbortSignal): Promise<RestoreStepResponse> {
    return this.upload(this.client.restoreDump.bind(this.client), header, data, signal);
  }

  close(): void {
    this.client.close();
  }

  private unary<Req, Res>(
    fn: (req: Req, md: Metadata, opts: Partial<CallOptions>, cb: (err: ServiceError | null, res: Res) => void) => unknown,
    req: Req,
    deadlineMs: number,
  ): Promise<Res> {
    return new Promise((resolve, reject) => {
      fn(req, new Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) => (err ? reject(this.fromStatus(err)) : resolve(res)));
    });
  }

  private async *stream<T>(call: ClientReadableStream<T>, signal: AbortSignal): AsyncGenerator<T> {
    const onAbort = (): void => call.cancel();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const msg of call) yield msg as T;
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      throw this.fromStatus(err as ServiceError);
    } finally {
      signal.removeEventListener('abort', onAbort);
      call.cancel();
    }
  }

  /** A gRPC status back into a KburError, naming the node; the original stays as cause. */
  fromStatus(err: ServiceError): KburError {
    const sent = err.metadata?.get(META_CODE)[0];
    const hint = err.metadata?.get(META_HINT)[0];
    const where = `${this.node.name} (${this.node.agent})`;
    if (typeof sent === 'string' && KBUR_CODES.has(sent)) {
      return new KburError(sent as ErrorCode, `${where}: ${err.details}`, {
        cause: err,
        hint: typeof hint === 'string' ? fromMetadataText(hint) : undefined,
      });
    }
    // No kbur code: the agent never answered (transport, TLS handshake, deadline).
    const code = (Object.entries(GRPC_CODE).find(([, c]) => c === err.code)?.[0] as ErrorCode | undefined) ?? 'UNAVAILABLE';
    const transport = code === 'UNAVAILABLE' || err.code === status.DEADLINE_EXCEEDED;
    return new KburError(
      transport ? 'UNAVAILABLE' : code,
      `${where}: ${transport ? 'agent not reachable: ' : ''}${err.details || err.message}`,
      {
        cause: err,
        hint: transport
          ? "check that kbur-agent runs on that node (systemctl status kbur-agent), that the address is right, and that both sides trust each other's CA"
          : undefined,
      },
    );
  }
}

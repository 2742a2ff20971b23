import { Metadata, credentials, type ChannelCredentials, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import {
  AgentServiceClient,
  type ArchiveKubernetesResponse,
  type GetNodeInfoResponse,
  type SnapshotEtcdResponse,
} from '../proto/gen/kbur/v1/agent.js';
import { KburError, type ErrorCode } from '../shared/errors.js';
import { GRPC_CODE, META_CODE, META_HINT, status } from '../shared/grpc-status.js';
import type { TlsMaterial } from '../shared/tls.js';

export interface NodeRef {
  name: string;
  agent: string;
}

const UNARY_DEADLINE_MS = 15_000;
const KBUR_CODES = new Set(Object.keys(GRPC_CODE));

/** One node's agent, over mTLS. Unary calls carry a deadline; streams end when the signal aborts. */
export class AgentClient {
  private readonly client: AgentServiceClient;

  constructor(
    readonly node: NodeRef,
    creds: ChannelCredentials,
  ) {
    this.client = new AgentServiceClient(node.agent, creds, {
      'grpc.max_receive_message_length': 16 << 20,
      'grpc.keepalive_time_ms': 30_000,
    });
  }

  static credentials(tls: TlsMaterial): ChannelCredentials {
    return credentials.createSsl(tls.ca, tls.key, tls.cert);
  }

  getNodeInfo(deadlineMs = UNARY_DEADLINE_MS): Promise<GetNodeInfoResponse> {
    return new Promise((resolve, reject) => {
      this.client.getNodeInfo({}, new Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) =>
        err ? reject(this.fromStatus(err)) : resolve(res),
      );
    });
  }

  snapshotEtcd(signal: AbortSignal): AsyncIterable<SnapshotEtcdResponse> {
    return this.stream(this.client.snapshotEtcd({}), signal);
  }

  archiveKubernetes(signal: AbortSignal): AsyncIterable<ArchiveKubernetesResponse> {
    return this.stream(this.client.archiveKubernetes({}), signal);
  }

  close(): void {
    this.client.close();
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
        hint: typeof hint === 'string' ? hint : undefined,
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

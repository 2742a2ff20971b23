import { makeGenericClientConstructor, type ChannelCredentials, type ClientOptions } from '@grpc/grpc-js';
import {
  AgentServiceService,
  ArchiveKubernetesResponse,
  KeepSnapshotRequest,
  RestoreDumpRequest,
  RunDumpResponse,
  StageSnapshotRequest,
  SnapshotEtcdResponse,
  type AgentServiceClient,
} from '../proto/gen/kbur/v1/agent.js';
import { decodeDataMessage, encodeDataMessage } from './data-message-codec.js';

/**
 * The generated service definition, with the data messages of the artifact streams (downloads and
 * uploads) going through data-message-codec.ts; every other message goes through the generated code.
 */
export const AgentService = {
  ...AgentServiceService,
  snapshotEtcd: { ...AgentServiceService.snapshotEtcd, ...responseCodec(SnapshotEtcdResponse, 2) },
  runDump: { ...AgentServiceService.runDump, ...responseCodec(RunDumpResponse, 2) },
  archiveKubernetes: { ...AgentServiceService.archiveKubernetes, ...responseCodec(ArchiveKubernetesResponse, 1) },
  keepSnapshot: { ...AgentServiceService.keepSnapshot, ...requestCodec(KeepSnapshotRequest, 2) },
  stageSnapshot: { ...AgentServiceService.stageSnapshot, ...requestCodec(StageSnapshotRequest, 2) },
  restoreKubernetesDir: { ...AgentServiceService.restoreKubernetesDir, ...requestCodec(StageSnapshotRequest, 2) },
  restoreDump: { ...AgentServiceService.restoreDump, ...requestCodec(RestoreDumpRequest, 2) },
} as const;

/** A streamed message: its `data` case (field `dataField`) is bytes; other cases are left to the generated code. */
type StreamMessage = { kind?: { $case: string; value: unknown } | undefined };
interface Generated<T> {
  encode(m: T): { finish(): Uint8Array };
  decode(b: Uint8Array): T;
}

function codec<T extends StreamMessage>(generated: Generated<T>, dataField: number) {
  return {
    serialize: (v: T): Buffer =>
      v.kind?.$case === 'data' ? encodeDataMessage(dataField, v.kind.value as Buffer) : Buffer.from(generated.encode(v).finish()),
    deserialize: (b: Buffer): T => {
      const data = decodeDataMessage(dataField, b);
      return data ? ({ kind: { $case: 'data', value: data } } as T) : generated.decode(b);
    },
  };
}

function responseCodec<T extends StreamMessage>(generated: Generated<T>, dataField: number) {
  const { serialize, deserialize } = codec(generated, dataField);
  return { responseSerialize: serialize, responseDeserialize: deserialize };
}

function requestCodec<T extends StreamMessage>(generated: Generated<T>, dataField: number) {
  const { serialize, deserialize } = codec(generated, dataField);
  return { requestSerialize: serialize, requestDeserialize: deserialize };
}

type AgentClientConstructor = new (
  address: string,
  credentials: ChannelCredentials,
  options?: Partial<ClientOptions>,
) => AgentServiceClient;
export const AgentClientCtor = makeGenericClientConstructor(AgentService, 'kbur.v1.AgentService') as unknown as AgentClientConstructor;

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

/**
 * The generated service definition, with a faster path for the data messages of the two artifact
 * streams, which carry every byte of a backup: encoded with one copy (the generated encoder makes
 * two) and decoded as a view into the received message (the generated decoder copies). Every
 * other message goes through the generated code unchanged; the bytes on the wire are the same.
 */
export const AgentService = {
  ...AgentServiceService,
  snapshotEtcd: {
    ...AgentServiceService.snapshotEtcd,
    responseSerialize: (v: SnapshotEtcdResponse): Buffer =>
      v.kind?.$case === 'data'
        ? bytesFieldInPlace(SNAPSHOT_DATA_FIELD, v.kind.value)
        : Buffer.from(SnapshotEtcdResponse.encode(v).finish()),
    responseDeserialize: (b: Buffer): SnapshotEtcdResponse => {
      const data = onlyBytesField(SNAPSHOT_DATA_FIELD, b);
      return data ? { kind: { $case: 'data', value: data } } : SnapshotEtcdResponse.decode(b);
    },
  },
  runDump: {
    ...AgentServiceService.runDump,
    responseSerialize: (v: RunDumpResponse): Buffer =>
      v.kind?.$case === 'data' ? bytesField(2, v.kind.value) : Buffer.from(RunDumpResponse.encode(v).finish()),
    responseDeserialize: (b: Buffer): RunDumpResponse => {
      const data = onlyBytesField(2, b);
      return data ? { kind: { $case: 'data', value: data } } : RunDumpResponse.decode(b);
    },
  },
  archiveKubernetes: {
    ...AgentServiceService.archiveKubernetes,
    responseSerialize: (v: ArchiveKubernetesResponse): Buffer =>
      v.kind?.$case === 'data' ? bytesField(1, v.kind.value) : Buffer.from(ArchiveKubernetesResponse.encode(v).finish()),
    responseDeserialize: (b: Buffer): ArchiveKubernetesResponse => {
      const data = onlyBytesField(1, b);
      return data ? { kind: { $case: 'data', value: data } } : ArchiveKubernetesResponse.decode(b);
    },
  },
  keepSnapshot: { ...AgentServiceService.keepSnapshot, ...uploadCodec(KeepSnapshotRequest) },
  stageSnapshot: { ...AgentServiceService.stageSnapshot, ...uploadCodec(StageSnapshotRequest) },
  restoreKubernetesDir: { ...AgentServiceService.restoreKubernetesDir, ...uploadCodec(StageSnapshotRequest) },
  restoreDump: { ...AgentServiceService.restoreDump, ...uploadCodec(RestoreDumpRequest) },
} as const;

/** Uploads (a header = 1, then data = 2) get the same fast path for their data messages. */
function uploadCodec<T extends { kind?: { $case: string; value: unknown } | undefined }>(generated: {
  encode(m: T): { finish(): Uint8Array };
  decode(b: Uint8Array): T;
}): { requestSerialize: (v: T) => Buffer; requestDeserialize: (b: Buffer) => T } {
  return {
    requestSerialize: (v) => (v.kind?.$case === 'data' ? bytesField(2, v.kind.value as Buffer) : Buffer.from(generated.encode(v).finish())),
    requestDeserialize: (b) => {
      const data = onlyBytesField(2, b);
      return data ? ({ kind: { $case: 'data', value: data } } as T) : generated.decode(b);
    },
  };
}

type AgentClientConstructor = new (
  address: string,
  credentials: ChannelCredentials,
  options?: Partial<ClientOptions>,
) => AgentServiceClient;
export const AgentClientCtor = makeGenericClientConstructor(AgentService, 'kbur.v1.AgentService') as unknown as AgentClientConstructor;

const LEN = 2;

/** SnapshotEtcdResponse's `data` field: the agent's etcd decoder prepares etcd's pieces for it. */
export const SNAPSHOT_DATA_FIELD = 2;

/** The tag and the length (a varint) of `bytes` field `field` holding `size` bytes. */
function fieldHead(field: number, size: number): number[] {
  const head = [(field << 3) | LEN];
  for (let n = size; ; n = Math.floor(n / 128)) {
    if (n < 128) {
      head.push(n);
      break;
    }
    head.push((n % 128) | 128);
  }
  return head;
}

/** A message holding only `bytes` field `field`: its tag, the length as a varint, the bytes. */
export function bytesField(field: number, data: Buffer): Buffer {
  const head = fieldHead(field, data.length);
  const out = Buffer.allocUnsafe(head.length + data.length);
  out.set(head, 0);
  data.copy(out, head.length);
  return out;
}

/**
 * bytesField, without copying when the bytes just before `data` in its memory already are the
 * field's tag and length: the message is then a view over them and `data`. The agent's decoder of
 * etcd's snapshot pieces leaves them so (decodeSnapshotResponse), which saves a copy of every byte
 * of a snapshot in the agent. The bytes are the same either way. For responses only: grpc-js
 * copies a response into its frame as it serializes it, before anything else runs; a request is
 * copied later, when the bytes before `data` may belong to something else that changed.
 */
export function bytesFieldInPlace(field: number, data: Buffer): Buffer {
  const head = fieldHead(field, data.length);
  const start = data.byteOffset - head.length;
  if (start < 0) return bytesField(field, data);
  const before = new Uint8Array(data.buffer, start, head.length);
  for (let i = 0; i < head.length; i++) if (before[i] !== head[i]) return bytesField(field, data);
  return Buffer.from(data.buffer, start, head.length + data.length);
}

/** The bytes of field `field` when that is all the message holds (a view, no copy); else undefined. */
export function onlyBytesField(field: number, msg: Buffer): Buffer | undefined {
  if (msg[0] !== ((field << 3) | LEN)) return undefined;
  let len = 0;
  let shift = 1;
  let i = 1;
  for (; i < msg.length && i < 6; i++) {
    len += (msg[i]! & 127) * shift;
    shift *= 128;
    if (msg[i]! < 128) break;
  }
  i++;
  return i + len === msg.length ? msg.subarray(i) : undefined;
}

import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { ArchiveKubernetesResponse, SnapshotEtcdResponse, StageSnapshotRequest } from '../../proto/gen/kbur/v1/agent.js';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { decodeSnapshotResponse } from '../../agent/etcd/snapshot-stream.js';
import { AgentService, bytesField, bytesFieldInPlace, onlyBytesField } from '../../shared/agent-service.js';

describe('the fast path for artifact data messages', () => {
  for (const size of [0, 1, 127, 128, 16_383, 16_384, 256 << 10, 2_097_153]) {
    it(`writes the same bytes as the generated encoder, and reads them back, for ${size} bytes`, () => {
      const data = randomBytes(size);
      const fast = AgentService.snapshotEtcd.responseSerialize({ kind: { $case: 'data', value: data } });
      const generated = Buffer.from(SnapshotEtcdResponse.encode({ kind: { $case: 'data', value: data } }).finish());
      expect(fast.equals(generated)).to.equal(true);
      const back = AgentService.snapshotEtcd.responseDeserialize(fast);
      expect(back.kind?.$case).to.equal('data');
      expect(Buffer.compare(back.kind!.value as Buffer, data)).to.equal(0);
    });
  }

  it('uploads data with the same bytes as the generated encoder, and reads them back', () => {
    const data = randomBytes(300_000);
    const fast = AgentService.stageSnapshot.requestSerialize({ kind: { $case: 'data', value: data } });
    expect(fast.equals(Buffer.from(StageSnapshotRequest.encode({ kind: { $case: 'data', value: data } }).finish()))).to.equal(true);
    expect(Buffer.compare(AgentService.restoreDump.requestDeserialize(fast).kind!.value as Buffer, data)).to.equal(0);
    const header = { kind: { $case: 'header' as const, value: { restoreId: 'r', size: 3, sha256: 'ab', localCopy: '', readdress: [] } } };
    expect(AgentService.stageSnapshot.requestDeserialize(AgentService.stageSnapshot.requestSerialize(header))).to.deep.equal(header);
  });

  it('leaves headers and trailers to the generated code', () => {
    const trailer = { kind: { $case: 'trailer' as const, value: { size: 5, sha256: 'ab', keyCount: 7 } } };
    const wire = AgentService.snapshotEtcd.responseSerialize(trailer);
    expect(AgentService.snapshotEtcd.responseDeserialize(wire)).to.deep.equal(trailer);
    const archiveTrailer = {
      kind: {
        $case: 'trailer' as const,
        value: { size: 1, sha256: 'cd', fileCount: 2, kubeadmConfigFiles: ['k.yaml'], kubernetesDir: '/etc/kubernetes' },
      },
    };
    const aw = AgentService.archiveKubernetes.responseSerialize(archiveTrailer);
    expect(aw.equals(Buffer.from(ArchiveKubernetesResponse.encode(archiveTrailer).finish()))).to.equal(true);
    expect(AgentService.archiveKubernetes.responseDeserialize(aw)).to.deep.equal(archiveTrailer);
  });

  it('does not take a message with more than the bytes field for a data message', () => {
    const msg = Buffer.concat([bytesField(2, Buffer.from('abc')), Buffer.from([0x18, 0x01])]);
    expect(onlyBytesField(2, msg)).to.equal(undefined);
  });

  /** etcd's SnapshotResponse as etcd sends it: header (revision), remaining_bytes, blob. */
  function etcdPiece(blob: Buffer, revision: number): Buffer {
    const header = new BinaryWriter().tag(3, WireType.Varint).int64(revision).finish();
    const w = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(header).tag(2, WireType.Varint).uint64(123_456);
    return Buffer.from(w.tag(3, WireType.LengthDelimited).bytes(blob).finish());
  }

  for (const size of [1, 200, 32 << 10]) {
    it(`forwards an etcd snapshot piece of ${size} bytes as the generated encoder would, without copying it`, () => {
      const blob = randomBytes(size);
      const piece = decodeSnapshotResponse(etcdPiece(blob, 77));
      expect(piece.revision).to.equal(77);
      expect(piece.blob.equals(blob)).to.equal(true);
      const sent = AgentService.snapshotEtcd.responseSerialize({ kind: { $case: 'data', value: piece.blob } });
      expect(sent.equals(Buffer.from(SnapshotEtcdResponse.encode({ kind: { $case: 'data', value: blob } }).finish()))).to.equal(true);
      // A view over the received message, ending where the blob ends: no copy.
      expect(sent.buffer).to.equal(piece.blob.buffer);
      expect(sent.byteOffset + sent.length).to.equal(piece.blob.byteOffset + piece.blob.length);
    });
  }

  it('copies when the bytes before the data are not its tag and length, and sends the same bytes either way', () => {
    const memory = Buffer.alloc(20, 0xff);
    const data = memory.subarray(5, 15);
    const copied = bytesFieldInPlace(2, data);
    expect(copied.buffer).to.not.equal(memory.buffer);
    expect(copied.equals(bytesField(2, data))).to.equal(true);
    memory[3] = 0x12; // tag of field 2, length-delimited
    memory[4] = 10; // the length
    const inPlace = bytesFieldInPlace(2, data);
    expect(inPlace.buffer).to.equal(memory.buffer);
    expect(inPlace.equals(bytesField(2, data))).to.equal(true);
    expect(bytesFieldInPlace(2, memory.subarray(0, 4)).equals(bytesField(2, memory.subarray(0, 4)))).to.equal(true);
  });
});

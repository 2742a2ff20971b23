import { randomBytes } from 'node:crypto';
import { expect } from 'chai';
import { ArchiveKubernetesResponse, SnapshotEtcdResponse, StageSnapshotRequest } from '../../proto/gen/kbur/v1/agent.js';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { decodeSnapshotResponse } from '../../agent/etcd/snapshot-stream.js';
import { AgentService } from '../../shared/agent-service.js';
import { decodeDataMessage, encodeDataMessage } from '../../shared/data-message-codec.js';

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
    const msg = Buffer.concat([encodeDataMessage(2, Buffer.from('abc')), Buffer.from([0x18, 0x01])]);
    expect(decodeDataMessage(2, msg)).to.equal(undefined);
  });

  /** etcd's SnapshotResponse as etcd sends it: header (revision), remaining_bytes, blob. */
  function etcdPiece(blob: Buffer, revision: number): Buffer {
    const header = new BinaryWriter().tag(3, WireType.Varint).int64(revision).finish();
    const w = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(header).tag(2, WireType.Varint).uint64(123_456);
    return Buffer.from(w.tag(3, WireType.LengthDelimited).bytes(blob).finish());
  }

  for (const size of [1, 200, 32 << 10]) {
    it(`forwards an etcd snapshot piece of ${size} bytes as the generated encoder would, leaving etcd's message as it came`, () => {
      const blob = randomBytes(size);
      const received = etcdPiece(blob, 77);
      const before = Buffer.from(received);
      const piece = decodeSnapshotResponse(received);
      expect(piece.revision).to.equal(77);
      expect(piece.blob.equals(blob)).to.equal(true);
      const sent = AgentService.snapshotEtcd.responseSerialize({ kind: { $case: 'data', value: piece.blob } });
      expect(sent.equals(Buffer.from(SnapshotEtcdResponse.encode({ kind: { $case: 'data', value: blob } }).finish()))).to.equal(true);
      expect(received.equals(before)).to.equal(true);
    });
  }
});

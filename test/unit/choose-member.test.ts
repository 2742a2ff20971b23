import { expect } from 'chai';
import type { EtcdMemberStatus } from '../../proto/gen/kbur/v1/agent.js';
import { MAX_RAFT_LAG, chooseSnapshotMembers } from '../../coordinator/backup/choose-member.js';

function member(id: string, over: Partial<EtcdMemberStatus> = {}): EtcdMemberStatus {
  return {
    reachable: true,
    error: '',
    memberId: id,
    name: id,
    version: '3.4.23',
    leaderId: 'a',
    isLeader: id === 'a',
    dbSize: 1,
    dbSizeInUse: 1,
    revision: 10,
    raftIndex: 5000,
    raftTerm: 2,
    clusterId: 'c',
    endpoint: '',
    dataDir: '',
    members: [],
    keyCount: 0,
    ...over,
  };
}

describe('chooseSnapshotMembers', () => {
  it('prefers in-sync followers, most advanced first, and keeps the leader as last resort', () => {
    const choice = chooseSnapshotMembers([
      { node: 'n1', etcd: member('a') },
      { node: 'n2', etcd: member('b', { raftIndex: 4990 }) },
      { node: 'n3', etcd: member('c', { raftIndex: 4999 }) },
    ]);
    expect(choice.order).to.deep.equal(['n3', 'n2', 'n1']);
    expect(choice.skipped).to.deep.equal([]);
  });

  it('leaves out a follower that lags the leader, an unreachable member and a node without agent', () => {
    const choice = chooseSnapshotMembers([
      { node: 'n1', etcd: member('a') },
      { node: 'n2', etcd: member('b', { raftIndex: 5000 - MAX_RAFT_LAG - 1 }) },
      { node: 'n3', etcd: member('c', { reachable: false, error: 'connection refused' }) },
      { node: 'n4', etcd: undefined },
    ]);
    expect(choice.order).to.deep.equal(['n1']);
    expect(choice.skipped.map((s) => s.node)).to.have.members(['n2', 'n3', 'n4']);
    expect(choice.skipped.find((s) => s.node === 'n2')!.reason).to.match(/behind the leader/);
  });

  it('gives, for a node whose agent answered with an error, that error as the reason it was left out', () => {
    const refused = 'node-2: kbur-agent on node-2 is kbur 9.9.9 (wire contract 3)';
    const choice = chooseSnapshotMembers([
      { node: 'n1', etcd: member('a') },
      { node: 'n2', etcd: undefined, agentError: refused },
    ]);
    expect(choice.skipped).to.deep.equal([{ node: 'n2', reason: refused }]);
  });

  it('breaks a tie between followers by node name in code-unit order, the same under every locale', () => {
    const choice = chooseSnapshotMembers([
      { node: 'cp-a', etcd: member('a') },
      { node: 'cp-b', etcd: member('b') },
      { node: 'CP-c', etcd: member('c') },
      { node: 'cp-10', etcd: member('d') },
    ]);
    // localeCompare would give cp-10, cp-b, CP-c: ICU weighs the letters first and the case last.
    expect(choice.order).to.deep.equal(['CP-c', 'cp-10', 'cp-b', 'cp-a']);
  });

  it('leaves out a member that sees another leader (a partition)', () => {
    const choice = chooseSnapshotMembers([
      { node: 'n1', etcd: member('a') },
      { node: 'n2', etcd: member('b') },
      { node: 'n3', etcd: member('c', { leaderId: 'c' }) },
    ]);
    expect(choice.order).to.deep.equal(['n2', 'n1']);
    expect(choice.skipped[0]!.node).to.equal('n3');
  });

  it('gives nothing to snapshot when no member has a leader', () => {
    const choice = chooseSnapshotMembers([{ node: 'n1', etcd: member('a', { leaderId: '', isLeader: false }) }]);
    expect(choice.order).to.deep.equal([]);
    expect(choice.skipped[0]!.reason).to.match(/no leader/);
  });
});

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { AgentMetrics } from '../../agent/metrics.js';
import type { AgentState } from '../../agent/state.js';
import { KburError } from '../../shared/errors.js';
import type { EtcdMemberStatus } from '../../proto/gen/kbur/v1/agent.js';

const MEMBER: EtcdMemberStatus = {
  reachable: true,
  error: '',
  memberId: 'a1',
  name: 'node-1',
  version: '3.4.23',
  leaderId: 'b2',
  isLeader: false,
  dbSize: 4096,
  dbSizeInUse: 2048,
  revision: 42,
  raftIndex: 100,
  raftTerm: 3,
  clusterId: 'c',
  endpoint: 'https://127.0.0.11:2379',
  dataDir: '/var/lib/etcd',
  members: [],
  keyCount: -1,
};

describe('agent metrics (/metrics)', () => {
  let dir: string;
  let metrics: AgentMetrics;
  const text = async (): Promise<string> => (await metrics.render()).text;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kbur-unit-'));
    // Only what the metrics read of a state: the node's name and folders.
    const config = { node: 'node-1', stateDir: dir, kubernetesDir: join(dir, 'kubernetes'), tls: { ca: '/none', cert: '/none' } };
    metrics = new AgentMetrics(() => ({ config }) as unknown as AgentState);
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('counts calls by method, granted role and result, times them, and counts streamed data bytes', async () => {
    metrics.callStarted('SnapshotEtcd')('operator');
    metrics.callStarted('SnapshotEtcd')(undefined, new KburError('PERMISSION_DENIED', 'no'));
    metrics.streamed('SnapshotEtcd', 'sent', { kind: { $case: 'data', value: Buffer.alloc(1000) } });
    metrics.streamed('SnapshotEtcd', 'sent', { kind: { $case: 'trailer', value: { size: 1 } } });
    const t = await text();
    expect(t).to.include('kbur_agent_calls_total{method="SnapshotEtcd",role="operator",result="ok"} 1');
    expect(t).to.include('kbur_agent_calls_total{method="SnapshotEtcd",role="none",result="permission_denied"} 1');
    expect(t).to.include('kbur_agent_call_duration_seconds_count{method="SnapshotEtcd",result="ok"} 1');
    expect(t).to.include('kbur_agent_calls_in_flight{method="SnapshotEtcd"} 0');
    expect(t).to.include('kbur_agent_stream_bytes_total{method="SnapshotEtcd",direction="sent"} 1000');
    expect(t).to.include('# TYPE process_cpu_seconds_total counter');
  });

  it('serves the member status the readiness poll last read, and only "up 0" for a member that did not answer', async () => {
    expect(await text()).to.not.include('kbur_etcd_member_up{');
    metrics.memberStatus(MEMBER);
    const t = await text();
    for (const line of [
      'kbur_etcd_member_up{node="node-1"} 1',
      'kbur_etcd_member_has_leader{node="node-1"} 1',
      'kbur_etcd_member_is_leader{node="node-1"} 0',
      'kbur_etcd_member_db_size_bytes{node="node-1"} 4096',
      'kbur_etcd_member_db_size_in_use_bytes{node="node-1"} 2048',
      'kbur_etcd_member_revision{node="node-1"} 42',
      'kbur_etcd_member_raft_term{node="node-1"} 3',
    ])
      expect(t).to.include(line);
    metrics.memberStatus({ ...MEMBER, reachable: false, error: 'connection refused' });
    const down = await text();
    expect(down).to.include('kbur_etcd_member_up{node="node-1"} 0');
    expect(down).to.not.include('kbur_etcd_member_revision{');
  });

  it('reports no snapshot copies and no certificates for a node that has none, without failing the scrape', async () => {
    const t = await text();
    expect(t).to.include('kbur_local_snapshot_copies{node="node-1"} 0');
    expect(t).to.not.include('kbur_certificate_expiry_timestamp_seconds{');
  });
});

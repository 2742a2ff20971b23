import { expect } from 'chai';
import { Journal } from '../../coordinator/restore/journal.js';
import type { Repository } from '../../coordinator/repository/repository.js';
import { EMPTY_PLAN } from '../helpers/restore-plan.js';
import { checkMemberRestore, memberRestoreProblem, type MemberRestoreArgs } from '../../shared/etcd-membership.js';

const good: MemberRestoreArgs = {
  name: 'cp-1.example.org',
  initialCluster: 'cp-1.example.org=https://10.0.0.11:2380,cp-2=https://10.0.0.12:2380,cp-3=https://[fd00::13]:2380',
  initialClusterToken: 'kbur-20261130T180143Z-2173',
  initialAdvertisePeerUrls: ['https://10.0.0.11:2380'],
};

describe('the etcd membership a member restore hands to etcdutl', () => {
  it('takes what kbur restore makes: names of nodes, https peer URLs (IPv6 too), kbur-<restore id>', () => {
    expect(memberRestoreProblem(good)).to.equal(undefined);
    expect(memberRestoreProblem({ ...good, name: 'cp-3', initialAdvertisePeerUrls: ['https://[fd00::13]:2380'] })).to.equal(undefined);
  });

  const hostile: [string, Partial<MemberRestoreArgs>, RegExp][] = [
    ['a name that is an option', { name: '--data-dir=/etc' }, /member name "--data-dir=\/etc"/],
    ['a name with a NUL', { name: 'cp\u00001' }, /member name/],
    ['a token that is an option', { initialClusterToken: '--force-new-cluster' }, /cluster token/],
    ['a token with a newline', { initialClusterToken: 'kbur\n--x' }, /cluster token/],
    ['a peer URL with a path', { initialAdvertisePeerUrls: ['https://10.0.0.11:2380/x'] }, /more than scheme, host and port/],
    ['a peer URL with credentials', { initialAdvertisePeerUrls: ['https://u:p@10.0.0.11:2380'] }, /more than scheme, host and port/],
    ['a peer URL without a port', { initialAdvertisePeerUrls: ['https://10.0.0.11'] }, /no host and port/],
    ['a file: URL', { initialAdvertisePeerUrls: ['file:///etc/passwd'] }, /not an http or https URL/],
    ['no peer URL', { initialAdvertisePeerUrls: [] }, /no peer URL/],
    ['an entry without =', { initialCluster: `${good.initialCluster},--force-new-cluster` }, /is not name=peer-url/],
    ['an initial cluster without this member', { initialCluster: 'cp-2=https://10.0.0.12:2380' }, /does not give member cp-1.example.org/],
    [
      'an initial cluster giving this member another URL',
      { initialCluster: 'cp-1.example.org=https://10.0.0.99:2380' },
      /does not give member cp-1.example.org its peer URLs/,
    ],
  ];
  for (const [what, change, message] of hostile) {
    it(`refuses ${what}, naming it, with INVALID_ARGUMENT`, () => {
      expect(memberRestoreProblem({ ...good, ...change })).to.match(message);
      expect(() => checkMemberRestore({ ...good, ...change }))
        .to.throw(/member restore refused/)
        .with.property('code', 'INVALID_ARGUMENT');
    });
  }

  it('makes a journal whose plan was edited into an etcd option unreadable, saying where, before --resume runs a step', async () => {
    const plan = EMPTY_PLAN;
    const node = {
      node: 'node-1',
      agent: '10.0.0.11:7443',
      memberName: 'node-1',
      peerUrls: ['https://10.0.0.11:2380'],
      dataDir: '/var/lib/etcd',
      etcdMode: 'static-pod',
      restoreTool: 'etcdutl',
      manifests: [],
    };
    const journal = (p: object): string =>
      JSON.stringify({
        restoreId: plan.restoreId,
        backupId: plan.backupId,
        cluster: 'demo',
        startedAt: '',
        updatedAt: '',
        status: 'failed',
        plan: p,
        entries: [],
      });
    const repoHolding = (text: string): Repository =>
      ({ location: 'memory', readJournal: () => Promise.resolve(text) }) as unknown as Repository;

    const fine = await Journal.load(repoHolding(journal({ ...plan, nodes: [node] })), 'demo', plan.restoreId);
    expect(fine.plan.nodes[0]!.memberName).to.equal('node-1');
    const edited = journal({ ...plan, initialCluster: 'node-1=https://10.0.0.11:2380,--force-new-cluster', nodes: [node] });
    const err = await Journal.load(repoHolding(edited), 'demo', plan.restoreId).catch((e: unknown) => e as Error);
    expect(err).to.be.instanceOf(Error);
    expect((err as Error).message).to.match(
      /journal of restore .* is not readable: plan\.nodes\.node-1: initial cluster .*is not name=peer-url/,
    );
  });
});

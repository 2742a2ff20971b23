import { expect } from 'chai';
import { PluginStatus, evaluate, parseThresholds } from '../../coordinator/status/check.js';
import type { StatusReport } from '../../coordinator/status/collect.js';
import { KburError } from '../../shared/errors.js';

const HOUR = 3600;
const DAY = 86400;

function healthy(over: Partial<StatusReport> = {}): StatusReport {
  return {
    cluster: 'prod',
    checkedAt: '2026-11-30T12:00:00.000Z',
    agents: ['n1', 'n2', 'n3'].map((node) => ({
      node,
      agent: `${node}:7443`,
      reachable: true,
      version: '0.1.0',
      role: 'monitor',
      uptimeSeconds: 60,
    })),
    members: ['n1', 'n2', 'n3'].map((node, i) => ({
      node,
      id: `${i}`,
      name: node,
      leader: i === 0,
      healthy: true,
      dbSize: 1,
      revision: 5,
    })),
    leader: 'n1',
    repository: { location: '/backups', reachable: true },
    backups: 4,
    lastBackup: { id: 'b', phase: 'Completed', finishedAt: '', ageSeconds: 2 * HOUR, size: 1000 },
    lastCompletedBackup: { id: 'b', phase: 'Completed', finishedAt: '', ageSeconds: 2 * HOUR, size: 1000 },
    lastVerified: { id: 'b', verifiedAt: '', ageSeconds: HOUR },
    snapshotCopies: [],
    nearestCertificates: [
      {
        node: 'n1',
        file: '/etc/kubernetes/pki/apiserver.crt',
        subject: 'CN=kube-apiserver',
        notAfter: '',
        secondsLeft: 300 * DAY,
        count: 20,
      },
    ],
    ...over,
  };
}

describe('kbur check (monitoring plugin verdict)', () => {
  const t = parseThresholds({});

  it('is OK with one line and perfdata after "|" when all is well', () => {
    const r = evaluate(healthy(), t);
    expect(r.status).to.equal(PluginStatus.OK);
    expect(r.line).to.equal(
      'KBUR OK - prod: last backup 2h old, verified 60m ago, 3/3 agents, 3/3 members healthy, leader n1 | ' +
        'backup_age=7200s;28800;93600;0 verify_age=3600s;93600;180000;0 cert_expiry=25920000s;2592000:;604800: ' +
        'agents_up=3;;;0;3 members_healthy=3;;;0;3 backup_size=1000B;;;0',
    );
  });

  it('warns for a backup older than the warning threshold, and is critical past the critical one', () => {
    const at = (age: number) =>
      evaluate(healthy({ lastCompletedBackup: { id: 'b', phase: 'Completed', finishedAt: '', ageSeconds: age, size: 1 } }), t);
    expect(at(9 * HOUR).status).to.equal(PluginStatus.WARNING);
    expect(at(9 * HOUR).line).to.match(/^KBUR WARNING - prod: last Completed backup 9h old \| /);
    expect(at(27 * HOUR).status).to.equal(PluginStatus.CRITICAL);
  });

  it('warns for a last backup PartiallyFailed, or no verification', () => {
    expect(
      evaluate(healthy({ lastBackup: { id: 'c', phase: 'PartiallyFailed', finishedAt: '', ageSeconds: 1, size: 1 } }), t).status,
    ).to.equal(PluginStatus.WARNING);
    const unverified = evaluate(healthy({ lastVerified: undefined }), t);
    expect(unverified.status).to.equal(PluginStatus.WARNING);
    expect(unverified.line).to.include('no verified backup');
  });

  it('is critical for an agent down, an unhealthy member, no leader, or a certificate past the critical threshold', () => {
    const down = healthy();
    down.agents[2] = { node: 'n3', agent: 'n3:7443', reachable: false, error: 'agent not reachable' };
    expect(evaluate(down, t).line).to.match(/^KBUR CRITICAL - prod: agent n3 down \| .*agents_up=2;;;0;3/);
    const sick = healthy();
    sick.members[1] = { ...sick.members[1]!, healthy: false, error: 'knows no leader' };
    expect(evaluate(sick, t).status).to.equal(PluginStatus.CRITICAL);
    expect(evaluate(healthy({ leader: undefined }), t).line).to.include('etcd members agree on no leader');
    const cert = healthy({ nearestCertificates: [{ ...healthy().nearestCertificates[0]!, secondsLeft: 3 * DAY }] });
    expect(evaluate(cert, t).line).to.match(/^KBUR CRITICAL - prod: n1: \/etc\/kubernetes\/pki\/apiserver.crt expires in 3d/);
    const soon = healthy({ nearestCertificates: [{ ...healthy().nearestCertificates[0]!, secondsLeft: 20 * DAY }] });
    expect(evaluate(soon, t).status).to.equal(PluginStatus.WARNING);
  });

  it('is UNKNOWN when the repository cannot be read, unless something is known to be critical', () => {
    const lost = healthy({
      repository: { location: '/backups', reachable: false, error: 'ENOENT' },
      lastBackup: undefined,
      lastCompletedBackup: undefined,
      lastVerified: undefined,
    });
    expect(evaluate(lost, t).line).to.match(/^KBUR UNKNOWN - prod: repository not readable: ENOENT \| /);
    lost.agents[0] = { node: 'n1', agent: 'n1:7443', reachable: false };
    expect(evaluate(lost, t).status).to.equal(PluginStatus.CRITICAL);
  });

  it('takes thresholds as WARNING:CRITICAL durations and refuses them backwards or malformed', () => {
    expect(parseThresholds({ backupAge: '30m:2d', certExpiry: '60d:14d' })).to.deep.include({
      backupAge: { warn: 1800, crit: 2 * DAY },
      certExpiry: { warn: 60 * DAY, crit: 14 * DAY },
    });
    const refused = (flags: Parameters<typeof parseThresholds>[0]): KburError => {
      try {
        parseThresholds(flags);
      } catch (err) {
        expect(KburError.hasCode(err, 'INVALID_ARGUMENT')).to.equal(true);
        return err as KburError;
      }
      throw new Error('accepted');
    };
    expect(refused({ backupAge: '26h:8h' }).message).to.equal(
      '--backup-age "26h:8h": the warning threshold must be at most the critical one',
    );
    expect(refused({ certExpiry: '7d:30d' }).message).to.equal(
      '--cert-expiry "7d:30d": the warning threshold must be at least the critical one',
    );
    expect(refused({ verifyAge: '1w:2w' }).message).to.match(/^--verify-age "1w:2w": expected WARNING:CRITICAL durations/);
  });
});

import { expect } from 'chai';
import { loadCoordinatorConfig, type RetentionPolicy } from '../../coordinator/config.js';
import { backupIdTime } from '../../coordinator/prune/leftovers.js';
import { isoWeek, selectRetention, type RetentionCandidate } from '../../coordinator/prune/retention.js';
import { newBackupId } from '../../shared/manifest.js';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const HOUR = 3_600_000;
const policy = (p: Partial<RetentionPolicy>): RetentionPolicy => ({
  keepLast: 0,
  hourly: 0,
  daily: 0,
  weekly: 0,
  monthly: 0,
  timeZone: 'UTC',
  ...p,
});
const at = (iso: string): RetentionCandidate => ({
  id: iso,
  startedAt: new Date(iso),
  phase: 'Completed',
  verified: false,
  restores: [],
});

/** 400 backups, every 6 hours, from 2026-08-23T00:00Z to Monday 2026-11-30T18:00Z. */
function history(): RetentionCandidate[] {
  const end = Date.parse('2026-11-30T18:00:00Z');
  return Array.from({ length: 400 }, (_, i) => at(new Date(end - i * 6 * HOUR).toISOString().replace('.000', '')));
}

describe('GFS retention (prune)', () => {
  it('keeps exactly what keepLast/hourly/daily/weekly/monthly say of 400 backups, plus the newest verified one and one a restore refers to', () => {
    const backups = history();
    const mark = (iso: string, change: Partial<RetentionCandidate>): void =>
      void Object.assign(
        backups.find((b) => b.id === iso)!,
        change,
      );
    mark('2026-09-10T06:00:00Z', { verified: true });
    mark('2026-08-30T00:00:00Z', { verified: true });
    mark('2026-08-25T12:00:00Z', { restores: ['20261001T000000Z-0001'] });
    mark('2026-10-15T06:00:00Z', { phase: 'Failed' });

    const decisions = selectRetention(backups, policy({ keepLast: 3, hourly: 2, daily: 7, weekly: 4, monthly: 3 }));
    const kept = decisions.filter((d) => d.keep).map((d) => d.id);
    expect(kept).to.deep.equal([
      '2026-11-30T18:00:00Z', // last 3, hourly, daily, weekly W49, monthly Nov
      '2026-11-30T12:00:00Z', // last 3, hourly
      '2026-11-30T06:00:00Z', // last 3
      '2026-11-29T18:00:00Z', // daily; weekly W48 (Sunday)
      '2026-11-28T18:00:00Z',
      '2026-11-27T18:00:00Z',
      '2026-11-26T18:00:00Z',
      '2026-11-25T18:00:00Z',
      '2026-11-24T18:00:00Z', // the 7th day
      '2026-11-22T18:00:00Z', // weekly W47
      '2026-11-15T18:00:00Z', // weekly W46
      '2026-10-31T18:00:00Z', // monthly Oct
      '2026-09-30T18:00:00Z', // monthly Sep
      '2026-09-10T06:00:00Z', // the newest verified
      '2026-08-25T12:00:00Z', // a restore's journal names it
    ]);
    expect(decisions).to.have.length(400);
    const why = (id: string): string[] => decisions.find((d) => d.id === id)!.reasons;
    expect(why('2026-11-30T18:00:00Z')).to.deep.equal([
      'last 3 (#1)',
      'hourly 2026-11-30T18',
      'daily 2026-11-30',
      'weekly 2026-W49',
      'monthly 2026-11',
    ]);
    expect(why('2026-11-29T18:00:00Z')).to.deep.equal(['daily 2026-11-29', 'weekly 2026-W48']);
    expect(why('2026-09-10T06:00:00Z')).to.deep.equal(['newest verified backup']);
    expect(why('2026-08-25T12:00:00Z')).to.deep.equal(['restore 20261001T000000Z-0001 refers to it']);
    expect(why('2026-08-30T00:00:00Z')[0]).to.match(
      /^not selected by the policy \(keepLast 3, hourly 2, daily 7, weekly 4, monthly 3; time zone UTC\)/,
    );
    expect(why('2026-10-15T06:00:00Z')).to.deep.equal(['Failed, and Completed backup 2026-11-30T18:00:00Z is newer']);
  });

  it('counts days in the configured time zone: 23:30 UTC is the next day in Berlin', () => {
    const backups = [at('2026-11-29T22:30:00Z'), at('2026-11-29T23:30:00Z'), at('2026-11-28T12:00:00Z')];
    const kept = (tz: string): string[] =>
      selectRetention(backups, policy({ daily: 2, timeZone: tz }))
        .filter((d) => d.keep)
        .map((d) => d.id);
    expect(kept('UTC')).to.deep.equal(['2026-11-29T23:30:00Z', '2026-11-28T12:00:00Z']);
    expect(kept('Europe/Berlin')).to.deep.equal(['2026-11-29T23:30:00Z', '2026-11-29T22:30:00Z']);
  });

  it('counts only Completed backups in the policy, and keeps a failed one while no Completed one is newer', () => {
    const backups = [
      at('2026-11-30T00:00:00Z'),
      at('2026-11-30T06:00:00Z'),
      { ...at('2026-11-30T12:00:00Z'), phase: 'PartiallyFailed' as const },
    ];
    const d = selectRetention(backups, policy({ keepLast: 1 }));
    expect(d.map((x) => [x.id, x.keep])).to.deep.equal([
      ['2026-11-30T12:00:00Z', true],
      ['2026-11-30T06:00:00Z', true],
      ['2026-11-30T00:00:00Z', false],
    ]);
    expect(d[0]!.reasons).to.deep.equal(['PartiallyFailed, newer than every Completed backup (kept to look into)']);
  });

  it('keeps the newest verified backup even when the policy keeps nothing that old, and only that one', () => {
    const backups = history().slice(0, 20);
    backups[15]!.verified = true;
    backups[18]!.verified = true;
    const kept = selectRetention(backups, policy({ keepLast: 2 })).filter((d) => d.keep);
    expect(kept.map((d) => d.id)).to.deep.equal([backups[0]!.id, backups[1]!.id, backups[15]!.id]);
  });

  it('gives ISO weeks: Monday starts one, the week of the first Thursday is week 1', () => {
    expect(isoWeek(2026, 11, 30)).to.equal('2026-W49');
    expect(isoWeek(2026, 11, 29)).to.equal('2026-W48');
    expect(isoWeek(2026, 12, 31)).to.equal('2026-W53');
    expect(isoWeek(2027, 1, 1)).to.equal('2026-W53');
    expect(isoWeek(2021, 1, 3)).to.equal('2020-W53');
    expect(isoWeek(2024, 12, 30)).to.equal('2025-W01');
  });

  it('reads the start time back from a backup id', () => {
    const when = new Date('2026-11-25T23:45:12.123Z');
    expect(backupIdTime(newBackupId(when)).toISOString()).to.equal(when.toISOString());
  });

  describe('retention in kbur.yaml', () => {
    let dir: string;
    before(async () => (dir = await mkdtemp(join(tmpdir(), 'kbur-retention-config-'))));
    after(() => rm(dir, { recursive: true, force: true }));
    const load = async (retention: string): Promise<unknown> => {
      const file = join(dir, 'kbur.yaml');
      await writeFile(
        file,
        `cluster: c\ntls: {ca: ca, cert: c, key: k}\nnodes: [{name: n1, agent: '127.0.0.1:7443'}]\nrepository: {type: local, path: r}\nretention: ${retention}\n`,
      );
      return (await loadCoordinatorConfig(file)).retention;
    };

    it('defaults every count to 0 and the time zone to UTC', async () => {
      expect(await load('{daily: 7}')).to.deep.equal(policy({ daily: 7 }));
    });
    it('refuses a policy that keeps nothing, an unknown time zone, a negative count and an unknown key, naming each', async () => {
      for (const [bad, message] of [
        ['{}', /"retention": expected at least one of keepLast/],
        ['{daily: 7, timeZone: Mars/Olympus}', /"retention\.timeZone": "Mars\/Olympus" is not a time zone: expected an IANA name/],
        ['{daily: -1}', /"retention\.daily"/],
        ['{yearly: 2}', /yearly/],
      ] as const) {
        let err: Error | undefined;
        await load(bad).catch((e: Error) => (err = e));
        expect(err?.message, bad).to.match(message);
      }
    });
  });
});

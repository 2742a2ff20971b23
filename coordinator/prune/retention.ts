import type { BackupPhase } from '../../shared/manifest.js';
import type { RetentionPolicy } from '../config.js';

/** A backup with a manifest, as prune sees it. */
export interface RetentionCandidate {
  id: string;
  startedAt: Date;
  phase: BackupPhase;
  /** Its verify.json says every artifact matched. */
  verified: boolean;
  /** Restores whose journal names it. */
  restores: string[];
}

export interface RetentionDecision {
  id: string;
  phase: BackupPhase;
  startedAt: string;
  keep: boolean;
  /** Why it is kept (every reason that holds), or why it goes. */
  reasons: string[];
}

type Bucket = 'hourly' | 'daily' | 'weekly' | 'monthly';
const BUCKETS: Bucket[] = ['hourly', 'daily', 'weekly', 'monthly'];

/**
 * Grandfather-father-son selection, as restic's `forget` does it: among Completed backups, the
 * newest `keepLast`, and for each of hourly/daily/weekly/monthly the newest backup of each of the
 * last N periods that have one (periods of `policy.timeZone`; weeks are ISO weeks). Always kept on
 * top: the newest Completed backup that passed verify, and any backup a restore journal refers
 * to. A Failed or PartiallyFailed backup is kept while no Completed one is newer, then goes.
 * Pure: same input, same answer, newest first.
 */
export function selectRetention(candidates: RetentionCandidate[], policy: RetentionPolicy): RetentionDecision[] {
  const newestFirst = [...candidates].sort((a, b) => b.startedAt.getTime() - a.startedAt.getTime() || (a.id < b.id ? 1 : -1));
  const reasons = new Map<string, string[]>(newestFirst.map((c) => [c.id, []]));
  const add = (id: string, why: string): number => reasons.get(id)!.push(why);
  const completed = newestFirst.filter((c) => c.phase === 'Completed');

  completed.slice(0, policy.keepLast).forEach((c, i) => add(c.id, `last ${policy.keepLast} (#${i + 1})`));
  const period = periodKeys(policy.timeZone);
  for (const bucket of BUCKETS) {
    const seen = new Set<string>();
    for (const c of completed) {
      if (seen.size >= policy[bucket]) break;
      const key = period(c.startedAt)[bucket];
      if (seen.has(key)) continue;
      seen.add(key);
      add(c.id, `${bucket} ${key}`);
    }
  }
  const verified = completed.find((c) => c.verified);
  if (verified) add(verified.id, 'newest verified backup');
  for (const c of newestFirst) for (const r of c.restores) add(c.id, `restore ${r} refers to it`);
  const newestCompleted = completed[0];

  return newestFirst.map((c) => {
    const why = reasons.get(c.id)!;
    const base = { id: c.id, phase: c.phase, startedAt: c.startedAt.toISOString() };
    if (c.phase !== 'Completed' && why.length === 0) {
      return newestCompleted && newestCompleted.startedAt > c.startedAt
        ? { ...base, keep: false, reasons: [`${c.phase}, and Completed backup ${newestCompleted.id} is newer`] }
        : { ...base, keep: true, reasons: [`${c.phase}, newer than every Completed backup (kept to look into)`] };
    }
    return why.length
      ? { ...base, keep: true, reasons: why }
      : { ...base, keep: false, reasons: [`not selected by the policy (${describePolicy(policy)})`] };
  });
}

export function describePolicy(p: RetentionPolicy): string {
  const parts = (['keepLast', ...BUCKETS] as const).filter((k) => p[k] > 0).map((k) => `${k} ${p[k]}`);
  return `${parts.join(', ')}; time zone ${p.timeZone}`;
}

/** The hour, day, ISO week and month a moment falls in, in a time zone: "2026-11-30T15", "2026-11-30", "2026-W49", "2026-11". */
export function periodKeys(timeZone: string): (d: Date) => Record<Bucket, string> {
  const fmt = new Intl.DateTimeFormat('en-US', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    hourCycle: 'h23',
  });
  return (d) => {
    const p = Object.fromEntries(fmt.formatToParts(d).map((x) => [x.type, x.value])) as Record<string, string>;
    const [y, m, day, h] = [p.year!, p.month!, p.day!, p.hour!];
    return {
      hourly: `${y}-${m}-${day}T${h}`,
      daily: `${y}-${m}-${day}`,
      weekly: isoWeek(Number(y), Number(m), Number(day)),
      monthly: `${y}-${m}`,
    };
  };
}

/** ISO 8601 week of a calendar date: weeks start on Monday; week 1 holds the year's first Thursday. */
export function isoWeek(year: number, month: number, day: number): string {
  const date = Date.UTC(year, month - 1, day);
  const weekday = (new Date(date).getUTCDay() + 6) % 7;
  const thursday = new Date(date + (3 - weekday) * 86_400_000);
  const isoYear = thursday.getUTCFullYear();
  const week = 1 + Math.floor((thursday.getTime() - Date.UTC(isoYear, 0, 1)) / (7 * 86_400_000));
  return `${isoYear}-W${String(week).padStart(2, '0')}`;
}

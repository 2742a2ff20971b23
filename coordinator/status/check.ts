import { z } from 'zod';
import { KburError } from '../../shared/errors.js';
import type { StatusReport } from './collect.js';

/** The monitoring plugin exit codes (Nagios, Icinga, Sensu, Checkmk...). */
export const PluginStatus = { OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3 } as const;
export type PluginStatus = (typeof PluginStatus)[keyof typeof PluginStatus];
const NAMES = ['OK', 'WARNING', 'CRITICAL', 'UNKNOWN'] as const;

export interface Thresholds {
  /** Age of the newest Completed backup, seconds. */
  backupAge: { warn: number; crit: number };
  /** Age of the newest successful verification, seconds. */
  verifyAge: { warn: number; crit: number };
  /** Seconds left before the first certificate of a node expires. */
  certExpiry: { warn: number; crit: number };
}

export const DEFAULT_THRESHOLDS = { backupAge: '8h:26h', verifyAge: '26h:50h', certExpiry: '30d:7d' } as const;

const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86400 } as const;
const duration = /^(\d+(?:\.\d+)?)([smhd]?)$/;

function seconds(text: string): number {
  const m = duration.exec(text)!;
  return Number(m[1]) * UNIT_SECONDS[(m[2] || 's') as keyof typeof UNIT_SECONDS];
}

const pair = z
  .string()
  .regex(/^\d+(\.\d+)?[smhd]?:\d+(\.\d+)?[smhd]?$/, { message: 'expected WARNING:CRITICAL durations such as 8h:26h (units s, m, h, d)' })
  .transform((v) => {
    const [warn, crit] = v.split(':') as [string, string];
    return { warn: seconds(warn), crit: seconds(crit) };
  });

/** The --backup-age, --verify-age and --cert-expiry flags, checked: ages warn before they are critical, expiry the other way round. */
export function parseThresholds(flags: { backupAge?: string; verifyAge?: string; certExpiry?: string }): Thresholds {
  const parse = (flag: string, value: string, order: 'ascending' | 'descending'): { warn: number; crit: number } => {
    const r = pair.safeParse(value);
    if (!r.success) throw new KburError('INVALID_ARGUMENT', `--${flag} "${value}": ${r.error.issues[0]!.message}`);
    const ok = order === 'ascending' ? r.data.warn <= r.data.crit : r.data.warn >= r.data.crit;
    if (!ok) {
      throw new KburError(
        'INVALID_ARGUMENT',
        `--${flag} "${value}": the warning threshold must be ${order === 'ascending' ? 'at most' : 'at least'} the critical one`,
        {
          hint: `e.g. --${flag} ${DEFAULT_THRESHOLDS[flag === 'backup-age' ? 'backupAge' : flag === 'verify-age' ? 'verifyAge' : 'certExpiry']}`,
        },
      );
    }
    return r.data;
  };
  return {
    backupAge: parse('backup-age', flags.backupAge ?? DEFAULT_THRESHOLDS.backupAge, 'ascending'),
    verifyAge: parse('verify-age', flags.verifyAge ?? DEFAULT_THRESHOLDS.verifyAge, 'ascending'),
    certExpiry: parse('cert-expiry', flags.certExpiry ?? DEFAULT_THRESHOLDS.certExpiry, 'descending'),
  };
}

export interface CheckResult {
  status: PluginStatus;
  /** One line: "KBUR <STATUS> - <what> | <perfdata>". */
  line: string;
}

/** The plugin's verdict on a status report: the worst finding sets the status; findings of that severity come first. */
export function evaluate(report: StatusReport, t: Thresholds): CheckResult {
  const findings: { status: PluginStatus; text: string }[] = [];
  const add = (status: PluginStatus, text: string): number => findings.push({ status, text });

  if (!report.repository.reachable) add(PluginStatus.UNKNOWN, `repository not readable: ${report.repository.error}`);
  for (const a of report.agents.filter((x) => !x.reachable)) add(PluginStatus.CRITICAL, `agent ${a.node} down`);
  for (const m of report.members.filter((x) => !x.healthy))
    add(PluginStatus.CRITICAL, `etcd member ${m.name || m.id} unhealthy (${m.error})`);
  if (report.members.some((m) => m.healthy) && !report.leader) add(PluginStatus.CRITICAL, 'etcd members agree on no leader');

  const backup = report.lastCompletedBackup;
  if (report.repository.reachable) {
    if (!backup) add(PluginStatus.CRITICAL, 'no Completed backup');
    else {
      const level = over(backup.ageSeconds, t.backupAge);
      if (level) add(level, `last Completed backup ${age(backup.ageSeconds)} old`);
    }
    if (report.lastBackup && report.lastBackup.phase !== 'Completed') add(PluginStatus.WARNING, `last backup ${report.lastBackup.phase}`);
    const verified = report.lastVerified;
    if (!verified) add(PluginStatus.WARNING, 'no verified backup');
    else {
      const level = over(verified.ageSeconds, t.verifyAge);
      if (level) add(level, `last verification ${age(verified.ageSeconds)} ago`);
    }
  }
  for (const c of report.nearestCertificates) {
    const level =
      c.secondsLeft <= t.certExpiry.crit ? PluginStatus.CRITICAL : c.secondsLeft <= t.certExpiry.warn ? PluginStatus.WARNING : undefined;
    if (level) add(level, `${c.node}: ${c.file} ${c.secondsLeft <= 0 ? 'expired' : `expires in ${age(c.secondsLeft)}`}`);
  }

  // UNKNOWN only when nothing is known to be wrong: a down agent outranks an unreadable repository.
  const rank = (s: PluginStatus): number => (s === PluginStatus.UNKNOWN ? 1.5 : s);
  const worst = findings.reduce<PluginStatus>((w, f) => (rank(f.status) > rank(w) ? f.status : w), PluginStatus.OK);
  const ordered = [...findings].sort((a, b) => rank(b.status) - rank(a.status)).map((f) => f.text);
  const up = report.agents.filter((a) => a.reachable).length;
  const healthy = report.members.filter((m) => m.healthy).length;
  const summary =
    worst === PluginStatus.OK
      ? `${report.cluster}: last backup ${age(backup!.ageSeconds)} old, verified ${age(report.lastVerified!.ageSeconds)} ago, ` +
        `${up}/${report.agents.length} agents, ${healthy}/${report.members.length} members healthy, leader ${report.leader ?? 'unknown'}`
      : `${report.cluster}: ${ordered.join('; ')}`;
  const nearest = Math.min(...report.nearestCertificates.map((c) => c.secondsLeft));
  const perf = [
    backup && `backup_age=${backup.ageSeconds}s;${t.backupAge.warn};${t.backupAge.crit};0`,
    report.lastVerified && `verify_age=${report.lastVerified.ageSeconds}s;${t.verifyAge.warn};${t.verifyAge.crit};0`,
    Number.isFinite(nearest) && `cert_expiry=${nearest}s;${t.certExpiry.warn}:;${t.certExpiry.crit}:`,
    `agents_up=${up};;;0;${report.agents.length}`,
    `members_healthy=${healthy};;;0;${report.members.length}`,
    backup && `backup_size=${backup.size}B;;;0`,
  ].filter(Boolean);
  return { status: worst, line: `KBUR ${NAMES[worst]} - ${summary} | ${perf.join(' ')}` };
}

function over(value: number, t: { warn: number; crit: number }): PluginStatus | undefined {
  return value >= t.crit ? PluginStatus.CRITICAL : value >= t.warn ? PluginStatus.WARNING : undefined;
}

/** 90 -> "1m", 7200 -> "2h", 3 days -> "3d": enough for a one-line verdict. */
export function age(s: number): string {
  const abs = Math.abs(s);
  if (abs < 120) return `${Math.round(s)}s`;
  if (abs < 7200) return `${Math.round(s / 60)}m`;
  if (abs < 3 * 86400) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

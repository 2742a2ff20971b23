import { execFile } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';

export const run = promisify(execFile);

export const MiB = 1 << 20;

export const GiB = 1 << 30;

/** Only PATH and the API version reach etcdctl: ETCDCTL_* variables of the caller's shell would override its flags. */
export const ETCDCTL_ENV = { PATH: process.env.PATH ?? '/usr/bin:/bin', ETCDCTL_API: '3' };

export const started = performance.now();

export function log(text: string): void {
  const t = ((performance.now() - started) / 1000).toFixed(0).padStart(5);
  process.stderr.write(`[bench ${t}s] ${text}\n`);
}

export const round = (x: number, digits = 3): number => Math.round(x * 10 ** digits) / 10 ** digits;

export const toMiB = (bytes: number): number => round(bytes / MiB, 1);

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function toMiBOrUndefined(kib: number | undefined): number | undefined {
  return kib === undefined ? undefined : round(kib / 1024, 1);
}

export function fmt(x: number | undefined, digits = 2): string {
  return x === undefined || Number.isNaN(x) ? '-' : x.toFixed(digits);
}

export function table(headers: string[], rows: string[][]): string[] {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
}

export function markdownTable(headers: string[], rows: string[][]): string[] {
  return [
    `| ${headers.join(' | ')} |`,
    `|${headers.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ];
}

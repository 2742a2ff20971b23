import { z } from 'zod';
import { KburError } from './errors.js';

const UNIT = { s: 1, m: 60, h: 3600 } as const;

/** "90s", "30m", "1h" or a number of seconds, as seconds. */
export const durationSeconds = z
  .union([z.number().nonnegative(), z.string().regex(/^\d+(\.\d+)?[smh]?$/, { message: 'expected a duration such as 90s, 30m or 1h' })])
  .transform((v) =>
    typeof v === 'number' ? v : /[smh]$/.test(v) ? Number(v.slice(0, -1)) * UNIT[v.slice(-1) as keyof typeof UNIT] : Number(v),
  );

/** A duration given on the command line, in milliseconds; INVALID_ARGUMENT naming the flag otherwise. */
export function parseDurationFlag(value: string, flag: string): number {
  const parsed = durationSeconds.safeParse(value);
  if (!parsed.success) {
    throw new KburError('INVALID_ARGUMENT', `${flag} "${value}": expected a duration such as 90s, 30m or 1h (0: do not wait)`, {
      hint: `e.g. ${flag} 10m`,
    });
  }
  return Math.round(parsed.data * 1000);
}

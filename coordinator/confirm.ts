import { createInterface } from 'node:readline/promises';
import { KburError } from '../shared/errors.js';
import type { Context } from './context.js';

/** --yes, or a yes typed on a terminal; anything else refuses. */
export async function confirm(ctx: Context, opts: { yes?: boolean }, what: string): Promise<boolean> {
  if (opts.yes) return true;
  if (!process.stdin.isTTY) {
    throw new KburError('INVALID_ARGUMENT', `refusing to ${what} without confirmation`, { hint: 'run it on a terminal, or pass --yes' });
  }
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`\n${what}? type yes to go on: `);
    if (answer.trim() === 'yes') return true;
    ctx.out.write('not confirmed; nothing was changed\n');
    return false;
  } finally {
    rl.close();
  }
}

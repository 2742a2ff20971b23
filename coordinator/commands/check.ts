import { asKburError } from '../../shared/errors.js';
import { connectAgents, loadContext, type GlobalOptions } from '../context.js';
import { DEFAULT_THRESHOLDS, PluginStatus, evaluate, parseThresholds } from '../status/check.js';
import { collectStatus } from '../status/collect.js';

export const DEFAULTS = DEFAULT_THRESHOLDS;
/** The exit code of a bad flag given to kbur check: UNKNOWN, as the plugin conventions want. */
export const USAGE_EXIT = PluginStatus.UNKNOWN;

export interface CheckOptions extends GlobalOptions {
  backupAge?: string;
  verifyAge?: string;
  certExpiry?: string;
}

/**
 * kbur check: a monitoring plugin (Nagios, Icinga, Sensu). One line, perfdata after "|", and the
 * plugin exit codes, not kbur's: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (also for a bad flag or config).
 * Needs only what the monitor role may do: node info from the agents, and reading the repository.
 */
export async function run(opts: CheckOptions, out: NodeJS.WritableStream = process.stdout): Promise<PluginStatus> {
  try {
    const thresholds = parseThresholds(opts);
    const ctx = await loadContext(opts, out);
    const agents = await connectAgents(ctx);
    try {
      const result = evaluate(await collectStatus(ctx, agents), thresholds);
      out.write(`${result.line}\n`);
      return result.status;
    } finally {
      for (const a of agents) a.close();
    }
  } catch (err) {
    out.write(`KBUR UNKNOWN - ${asKburError(err).message.split('\n')[0]}\n`);
    return PluginStatus.UNKNOWN;
  }
}

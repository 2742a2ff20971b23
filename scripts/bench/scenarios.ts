/**
 * The scenario registry: every scenario the benchmark runs, in the order they run at a size. A
 * scenario's module says what it needs and measures; main.ts only walks the sizes and this list.
 */
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { TARGETS, benchSize } from './backup.js';
import { backupMarkdown, backupText, hasBackup } from './backup-report.js';
import type { Options, ScenarioName } from './options.js';
import { RESTORE_TARGETS, benchRestore, emptyRestoreResult, finishRestoreResult } from './restore.js';
import { RESTORE_METHOD, restoreMarkdown, restoreText } from './restore-report.js';
import { type Scenario, isFirst } from './scenario.js';
import { binariesScenario } from './binaries.js';
import { deepVerifyScenario } from './deep-verify.js';
import { rebuildScenario } from './rebuild.js';
import { s3Scenario } from './s3.js';
import { scrapeScenario } from './scrape.js';
import { round } from './util.js';

const backupScenario: Scenario = {
  name: 'backup',
  title: '`kbur backup` against `etcdctl snapshot save` of the same member',
  missing: async () => undefined,
  sizes: (opts) => opts.sizes,
  async run(ctx) {
    const loadBefore = loadavg().map((x) => round(x, 2));
    try {
      ctx.report.results.push(await benchSize(ctx, loadBefore));
    } catch (err) {
      if (!ctx.state.abort.signal.aborted)
        ctx.report.results.push({
          sizeMiB: ctx.sizeMiB,
          quotaBackendBytes: 0,
          dbSizeBytes: 0,
          dbSizeMiB: 0,
          members: [],
          snapshotNode: '',
          sandboxStartSeconds: 0,
          fillSeconds: 0,
          fill: undefined!,
          warmUp: undefined,
          loadAverage: { before: [], after: loadavg().map((x) => round(x, 2)) },
          runs: [],
          median: undefined,
          max: undefined,
          targets: TARGETS,
          pass: { ratio: false, rss: false, coordinatorRss: false, agentRss: false, snapshotsMatch: false },
          error: (err as Error).message,
        });
      throw err;
    }
  },
  text: (report) => (hasBackup(report) ? backupText(report) : []),
  markdown: (report) => (hasBackup(report) ? backupMarkdown(report) : []),
};

const restoreScenario: Scenario = {
  name: 'restore',
  title: "`kbur restore` against etcd's manual recovery procedure (RTO)",
  missing: async () => undefined,
  sizes: (opts) => opts.restoreSizes,
  async run(ctx) {
    const section = (ctx.report.restore ??= { targets: RESTORE_TARGETS, method: RESTORE_METHOD, results: [] });
    const result = emptyRestoreResult(ctx.sizeMiB);
    section.results.push(result);
    try {
      const { filled, reused } = await ctx.filled();
      await benchRestore(ctx.sizeMiB, ctx.opts, ctx.state, filled, reused, result);
    } catch (err) {
      result.error = (err as Error).message;
      throw err;
    } finally {
      finishRestoreResult(result);
    }
  },
  text: (report) => (report.restore ? restoreText(report.restore, !isFirst(report, 'restore')) : []),
  markdown: (report) => (report.restore ? restoreMarkdown(report.restore, !isFirst(report, 'restore')) : []),
};

export const SCENARIOS: readonly Scenario[] = [
  backupScenario,
  scrapeScenario,
  s3Scenario,
  deepVerifyScenario,
  binariesScenario,
  restoreScenario,
  rebuildScenario,
];

export const scenario = (name: ScenarioName): Scenario | undefined => SCENARIOS.find((s) => s.name === name);

/**
 * The scenarios to run: those asked for (each must be able to run here, else an error naming why),
 * or every one whose prerequisites exist, with the reasons of those left out.
 */
export async function selectScenarios(opts: Options): Promise<{ selected: Scenario[]; skipped: { name: string; why: string }[] }> {
  const selected: Scenario[] = [];
  const skipped: { name: string; why: string }[] = [];
  for (const name of opts.scenarios ?? SCENARIOS.map((s) => s.name)) {
    const s = scenario(name);
    const why = s ? await s.missing() : 'not in this checkout of the benchmark';
    if (why === undefined && s) {
      if (s.sizes(opts).length) selected.push(s);
      else skipped.push({ name, why: 'no size to run at (none)' });
    } else if (opts.scenarios) throw new Error(`--scenarios: ${name} cannot run here: ${why}`);
    else skipped.push({ name, why: why! });
  }
  if (selected.length === 0) throw new Error('nothing to measure: no scenario with a size to run at');
  return { selected, skipped };
}

export const scenarioDir = (root: string, sizeMiB: number): string => join(root, `size-${sizeMiB}MiB`);

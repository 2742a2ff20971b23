import type { Options, ScenarioName } from './options.js';
import type { Report } from './report.js';
import type { FilledSandbox, State } from './sandbox.js';

/** What a scenario gets at one size. */
export interface Context {
  sizeMiB: number;
  opts: Options;
  state: State;
  report: Report;
  /** A folder of the scenario's own at this size, for its files (removed after the size unless --keep). */
  dir: string;
  /**
   * The filled sandbox of this size: the one an earlier scenario at this size left running (reused),
   * else a fresh one, started and filled now.
   */
  filled(): Promise<{ filled: FilledSandbox; reused: boolean }>;
}

/**
 * One benchmark scenario. `run` records its result in its own section of the report, an error too
 * (then it throws, and the next scenario at that size gets a fresh sandbox); the renderers return
 * nothing when the report has no section of theirs.
 */
export interface Scenario {
  name: ScenarioName;
  /** One line: what it measures against what. */
  title: string;
  /** Why it cannot run on this checkout or machine (a feature not built, a tool missing); undefined when it can. */
  missing(): Promise<string | undefined>;
  /** The sizes (MiB) of the filled sandboxes it runs on. */
  sizes(opts: Options): number[];
  run(ctx: Context): Promise<void>;
  /** Leaves the sandbox unfit for the next scenario (nodes reset): the next one starts a fresh one. */
  consumesSandbox?: boolean;
  text(report: Report): string[];
  markdown(report: Report): string[];
}

/** Whether a scenario's section comes first in the report (the report's title then names it). */
export const isFirst = (report: Report, name: ScenarioName): boolean => report.scenarios[0] === name;

/** Opens a scenario's part of the Markdown report: a top heading unless the report's title is its own. */
export const markdownHead = (report: Report, name: ScenarioName, heading: string): string[] =>
  isFirst(report, name) ? [] : [`# ${heading}`, ''];

/**
 * Runs a scenario's measurement into its result: an error is recorded in `r.error` and rethrown,
 * and `finish` fills in the medians and verdicts in every case (the runs measured so far count).
 */
export async function measureInto<R extends { error?: string }>(r: R, bench: () => Promise<void>, finish: (r: R) => void): Promise<void> {
  try {
    await bench();
  } catch (err) {
    r.error = (err as Error).message;
    throw err;
  } finally {
    finish(r);
  }
}

import { markdownTable, table } from './util.js';

/** A table's columns and rows, as util's table and markdownTable take them. */
export interface Rows {
  headers: string[];
  rows: string[][];
}

/** What the section renderers read of a scenario's result at one size. */
export interface SectionResult {
  sizeMiB: number;
  error?: string;
  /** A run's problems (a failed check) are listed under its result. */
  runs: readonly { run: number; problems?: readonly string[] }[];
}

/** A result's verdict: ERROR when it failed, pass when every target flag holds, else FAIL naming the ones missed. */
export function verdict(error: string | undefined, flags: Record<string, boolean>): string {
  if (error) return 'ERROR';
  const missed = Object.keys(flags).filter((k) => !flags[k]);
  return missed.length ? `FAIL (${missed.join(', ')})` : 'pass';
}

/** The text lines of the targets missed, e.g. `S3 TARGETS MISSED:` and one indented line each, or `met`. */
export const missedText = (missed: string[], heading: string, met: string): string =>
  missed.length ? `${heading}\n${missed.map((f) => `  - ${f}`).join('\n')}` : met;

/** The end of most text sections: the target line, then what missed it. */
export const targetsText = (line: string, missed: string[], heading: string, met: string): string[] => [
  '',
  line,
  missedText(missed, heading, met),
];

export interface TextSection<R extends SectionResult> {
  /** The line naming the section; none for the section the report's title names. */
  title?: string;
  /** The section opens the report: the header's blank line already precedes the title. */
  first?: boolean;
  summary: Rows;
  results: R[];
  headline(r: R): string;
  runs(r: R): Rows;
  /** More lines of a result with runs, after its runs table. */
  afterRuns?(r: R): string[];
  /** What follows the results: notes, the targets and what missed them. */
  tail: string[];
}

/** A scenario's section of the printed report: summary table, then per size its headline, error and runs. */
export function sectionText<R extends SectionResult>(s: TextSection<R>): string[] {
  const out = s.title === undefined ? [] : [...(s.first ? [] : ['']), s.title, ''];
  out.push(...table(s.summary.headers, s.summary.rows));
  for (const r of s.results) {
    out.push('', s.headline(r));
    if (r.error) out.push(`  ERROR: ${r.error}`);
    if (r.runs.length) {
      const t = s.runs(r);
      out.push(...table(t.headers, t.rows).map((l) => `  ${l}`), ...(s.afterRuns?.(r) ?? []));
    }
    for (const run of r.runs) for (const p of run.problems ?? []) out.push(`  run ${run.run}: ${p}`);
  }
  out.push(...s.tail);
  return out;
}

export interface MarkdownSection<R extends SectionResult> {
  /** The section's top heading (scenario.ts markdownHead). */
  head: string[];
  /** The paragraph stating the targets, before the summary table. */
  target: string;
  summary: Rows;
  results: R[];
  /** Names the section's own headings: `## <label> 300 MiB`, `## <label> result`; none: `## 300 MiB`, `## Result`. */
  label?: string;
  /** The paragraphs under a size's heading. */
  describe(r: R): string[];
  runs(r: R): Rows;
  /** Lines of a result with runs before its runs table, and after it. */
  beforeRuns?(r: R): string[];
  afterRuns?(r: R): string[];
  /** Sections after the results, before the result section. */
  afterResults?: string[];
  /** The result section: the targets missed, else `met`; then `after`. None when the scenario has no target. */
  result?: { missed: string[]; met: string; after?: string[] };
  method: string[];
}

/** A scenario's part of the Markdown report: targets, summary table, a section per size, result and method. */
export function sectionMarkdown<R extends SectionResult>(s: MarkdownSection<R>): string[] {
  const heading = (what: string): string => (s.label ? `## ${s.label} ${what}` : `## ${what[0]!.toUpperCase()}${what.slice(1)}`);
  const out = [...s.head, s.target, '', ...markdownTable(s.summary.headers, s.summary.rows)];
  for (const r of s.results) {
    out.push('', heading(`${r.sizeMiB} MiB`), '', ...s.describe(r));
    if (r.error) out.push('', `**ERROR**: ${r.error}`);
    if (r.runs.length) {
      const t = s.runs(r);
      out.push(...(s.beforeRuns?.(r) ?? []), '', ...markdownTable(t.headers, t.rows), ...(s.afterRuns?.(r) ?? []));
    }
    for (const run of r.runs) for (const p of run.problems ?? []) out.push('', `- run ${run.run}: ${p}`);
  }
  out.push(...(s.afterResults ?? []));
  if (s.result) {
    const { missed, met, after } = s.result;
    out.push('', heading('result'), '', missed.length ? missed.map((f) => `- missed: ${f}`).join('\n') : met, ...(after ?? []));
  }
  out.push('', heading('method'), '', ...s.method.map((x) => `- ${x}`), '');
  return out;
}

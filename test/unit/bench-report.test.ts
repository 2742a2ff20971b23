import { expect } from 'chai';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { ScenarioName } from '../../scripts/bench/options.js';
import { markdownReport, textReport, type Report } from '../../scripts/bench/report.js';

// The sources' fixture folder (dist/test/unit -> test/fixtures): the expected files are not built.
const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/bench-report/', import.meta.url));

/** Where each scenario keeps its results in the report. */
const SECTION = {
  backup: 'results',
  restore: 'restore',
  scrape: 'scrape',
  s3: 's3',
  'deep-verify': 'deepVerify',
  binaries: 'binaries',
  rebuild: 'rebuild',
} as const satisfies Record<ScenarioName, keyof Report>;

/** The report as if only this scenario had run: its title and first-section layout then apply. */
function alone(report: Report, name: ScenarioName): Report {
  const out: Report = { ...report, scenarios: [name], results: name === 'backup' ? report.results : [] };
  for (const [n, key] of Object.entries(SECTION)) if (n !== name && key !== 'results') delete out[key];
  return out;
}

describe('benchmark report: the text printed and the Markdown written', function () {
  // report.json: per scenario a measured result, the same with every target missed, and one that
  // failed with no runs (and S3's large sizes: passed, missed, failed). The expected files were
  // rendered from it by the report code before its renderers were shared between scenarios.
  let report: Report;
  before(async function () {
    report = JSON.parse(await readFile(`${FIXTURES}report.json`, 'utf8')) as Report;
  });

  const expectSame = async (got: string, file: string): Promise<void> => {
    expect(got, file).to.equal(await readFile(`${FIXTURES}expected/${file}`, 'utf8'));
  };

  it('renders every scenario in one report as before, byte for byte', async function () {
    await expectSame(textReport(report), 'full.txt');
    await expectSame(markdownReport(report), 'full.md');
  });

  for (const name of Object.keys(SECTION) as ScenarioName[])
    it(`renders ${name} alone (its section first) as before, byte for byte`, async function () {
      await expectSame(textReport(alone(report, name)), `${name}.txt`);
      await expectSame(markdownReport(alone(report, name)), `${name}.md`);
    });
});

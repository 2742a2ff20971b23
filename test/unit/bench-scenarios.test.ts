import { expect } from 'chai';
import { SCENARIO_NAMES, options } from '../../scripts/bench/options.js';
import { SCENARIOS, selectScenarios } from '../../scripts/bench/scenarios.js';
import { percentile } from '../../scripts/bench/scrape.js';

describe('benchmark: choosing scenarios and sizes', function () {
  it('knows every scenario of the registry by name, in the order they run', function () {
    expect(SCENARIOS.map((s) => s.name)).to.deep.equal([...SCENARIO_NAMES]);
  });

  it('runs the scenarios asked for in registry order, each at its sizes', function () {
    const opts = options([
      '--scenarios',
      'restore,backup',
      '--sizes',
      '40',
      '--restore-sizes',
      '50',
      '--size',
      '60',
      '--large-sizes',
      '70',
    ]);
    expect(opts.scenarios).to.deep.equal(['backup', 'restore']);
    expect(SCENARIOS.find((s) => s.name === 'backup')!.sizes(opts)).to.deep.equal([40]);
    expect(SCENARIOS.find((s) => s.name === 'restore')!.sizes(opts)).to.deep.equal([50]);
    expect(SCENARIOS.find((s) => s.name === 'scrape')!.sizes(opts)).to.deep.equal([60]);
    expect(SCENARIOS.find((s) => s.name === 's3')!.sizes(opts)).to.deep.equal([60, 70]);
  });

  it('refuses an unknown scenario, naming the ones it knows', function () {
    expect(() => options(['--scenarios', 'backup,speed'])).to.throw(
      `--scenarios: expected a comma-separated list of ${SCENARIO_NAMES.join(', ')}; got backup,speed`,
    );
  });

  it('refuses more than one --size', function () {
    expect(() => options(['--size', '300,1536'])).to.throw('--size: expected one size in MiB, e.g. 300; got 300,1536');
  });

  it('leaves out a scenario with nothing to run at, and refuses to run nothing', async function () {
    const some = await selectScenarios(options(['--scenarios', 'backup,restore', '--sizes', 'none']));
    expect(some.selected.map((s) => s.name)).to.deep.equal(['restore']);
    expect(some.skipped).to.deep.equal([{ name: 'backup', why: 'no size to run at (none)' }]);
    await selectScenarios(options(['--scenarios', 'backup', '--sizes', 'none'])).then(
      () => expect.fail('selected nothing without an error'),
      (err: Error) => expect(err.message).to.equal('nothing to measure: no scenario with a size to run at'),
    );
  });

  it('takes the p95 of scrape latencies by nearest rank', function () {
    const sorted = Array.from({ length: 20 }, (_, i) => i + 1);
    expect(percentile(sorted, 95)).to.equal(19);
    expect(percentile(sorted, 100)).to.equal(20);
    expect(percentile([7], 95)).to.equal(7);
  });
});

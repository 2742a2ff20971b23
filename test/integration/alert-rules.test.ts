import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';

const exec = promisify(execFile);
const MONITORING = fileURLToPath(new URL('../../../monitoring/', import.meta.url));

describe('the alert rules shipped in monitoring/', function () {
  this.timeout(60_000);

  it('pass promtool check rules', async function () {
    const { stdout } = await exec('promtool', ['check', 'rules', 'kbur.rules.yml'], { cwd: MONITORING });
    expect(stdout).to.include('SUCCESS');
  });

  it('pass their promtool unit tests: every alert fires when it should and not otherwise', async function () {
    const { stdout } = await exec('promtool', ['test', 'rules', 'kbur.rules.test.yml'], { cwd: MONITORING });
    expect(stdout).to.include('SUCCESS');
  });
});

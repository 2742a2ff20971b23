import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';

const exec = promisify(execFile);
const unit = (name: string): string => fileURLToPath(new URL(`../../../systemd/${name}`, import.meta.url));
const UNITS = ['kbur-agent.service', 'kbur-backup.service', 'kbur-backup.timer'];

describe('systemd units', () => {
  it('pass systemd-analyze verify without a single warning', async function () {
    this.timeout(60_000);
    const { stdout, stderr } = await exec('systemd-analyze', ['verify', ...UNITS.map(unit)]);
    // Unknown keys and bad values are only warnings (exit 0): any output at all fails.
    expect(stdout + stderr).to.equal('');
  });

  it('run a backup, then prune only if the backup exited 0, each waiting a while for the repository lock', async () => {
    const service = await readFile(unit('kbur-backup.service'), 'utf8');
    const exec = [...service.matchAll(/^(Exec\w+)=(.*)$/gm)].map((m) => `${m[1]}=${m[2]}`);
    // Type=oneshot runs its ExecStart lines in order and stops at the first that fails.
    expect(service).to.match(/^Type=oneshot$/m);
    expect(exec).to.deep.equal([
      'ExecStart=/usr/bin/env kbur --config /etc/kbur/kbur.yaml backup --verify deep --wait 30m',
      'ExecStart=/usr/bin/env kbur --config /etc/kbur/kbur.yaml prune --wait 10m',
    ]);
  });

  it('start the backup every 6 hours, spread over 10 minutes, catching up a run missed while the machine was off', async () => {
    const timer = await readFile(unit('kbur-backup.timer'), 'utf8');
    expect(timer).to.match(/^OnCalendar=\*-\*-\* 00\/6:00:00$/m);
    expect(timer).to.match(/^RandomizedDelaySec=10min$/m);
    expect(timer).to.match(/^Persistent=true$/m);
  });
});

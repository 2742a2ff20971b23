import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';

const unit = (name: string): string => fileURLToPath(new URL(`../../../systemd/${name}`, import.meta.url));

// systemd-analyze verify runs on the installed units: test/integration/package.test.ts.
describe('systemd units', () => {
  it('run a backup, then prune only if the backup exited 0, each waiting a while for the repository lock', async () => {
    const service = await readFile(unit('kbur-backup.service'), 'utf8');
    const exec = [...service.matchAll(/^(Exec\w+)=(.*)$/gm)].map((m) => `${m[1]}=${m[2]}`);
    // Type=oneshot runs its ExecStart lines in order and stops at the first that fails.
    expect(service).to.match(/^Type=oneshot$/m);
    expect(exec).to.deep.equal([
      'ExecStart=/usr/bin/kbur --config /etc/kbur/kbur.yaml backup --verify deep --wait 30m',
      'ExecStart=/usr/bin/kbur --config /etc/kbur/kbur.yaml prune --wait 10m',
    ]);
  });

  it('start the backup every 6 hours, spread over 10 minutes, catching up a run missed while the machine was off', async () => {
    const timer = await readFile(unit('kbur-backup.timer'), 'utf8');
    expect(timer).to.match(/^OnCalendar=\*-\*-\* 00\/6:00:00$/m);
    expect(timer).to.match(/^RandomizedDelaySec=10min$/m);
    expect(timer).to.match(/^Persistent=true$/m);
  });
});

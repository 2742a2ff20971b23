import { expect } from 'chai';
import { BACKUP_ID, newBackupId } from '../../shared/manifest.js';

describe('backup ids', () => {
  it('say the UTC second, then the millisecond in hex and one random hex digit', () => {
    expect(newBackupId(new Date('2026-11-25T23:45:12.123Z'), () => '3')).to.equal('20261125T234512Z-07b3');
    expect(newBackupId(new Date('2026-11-25T23:45:12.000Z'), () => 'f')).to.equal('20261125T234512Z-000f');
    expect(newBackupId(new Date('2026-11-25T23:45:12.999Z'), () => '0')).to.equal('20261125T234512Z-3e70');
  });

  it('sort by time, within one second too', () => {
    const times = ['2026-11-25T23:45:12.001Z', '2026-11-25T23:45:12.010Z', '2026-11-25T23:45:12.999Z', '2026-11-25T23:45:13.000Z'];
    // Random digits that would sort the other way if they decided the order.
    const ids = times.map((t, i) => newBackupId(new Date(t), () => 'fdb9'[i]!));
    for (const id of ids) expect(id).to.match(BACKUP_ID);
    expect([...ids].sort()).to.deep.equal(ids);
    expect(newBackupId()).to.match(BACKUP_ID);
  });
});

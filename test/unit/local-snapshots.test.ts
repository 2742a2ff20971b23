import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { listLocalSnapshots, localSnapshotDir } from '../../agent/local-snapshots.js';
import { fakeSnapshot } from './streams.test.js';

describe('local snapshot copies (agent)', () => {
  let stateDir: string;
  beforeEach(async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'kbur-unit-'));
    await mkdir(localSnapshotDir(stateDir));
  });
  afterEach(() => rm(stateDir, { recursive: true, force: true }));

  async function copy(id: string, bytes: Buffer, recorded: { size?: number; sha256?: string; keptAt?: string } = {}): Promise<void> {
    const dir = localSnapshotDir(stateDir);
    await writeFile(join(dir, `${id}.db`), bytes);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    await writeFile(join(dir, `${id}.json`), JSON.stringify({ backupId: id, size: bytes.length, sha256, ...recorded }));
  }

  it('offers only whole, recorded copies, newest first', async () => {
    const snap = fakeSnapshot(8);
    await copy('20261120T010000Z-aaaa', snap);
    await copy('20261121T010000Z-bbbb', snap);
    // A copy whose file is not the size its record says (cut short), one without a record (its
    // record was never written), a file that is not a backup id, a record that is not JSON.
    await copy('20261122T010000Z-cccc', snap, { size: snap.length + 1 });
    await writeFile(join(localSnapshotDir(stateDir), '20261123T010000Z-dddd.db'), snap);
    await writeFile(join(localSnapshotDir(stateDir), 'notes.json'), '{}');
    await writeFile(join(localSnapshotDir(stateDir), '20261124T010000Z-eeee.json'), 'not json');
    const got = await listLocalSnapshots(stateDir);
    expect(got.map((c) => c.backupId)).to.deep.equal(['20261121T010000Z-bbbb', '20261120T010000Z-aaaa']);
    expect(got[0]).to.deep.include({ size: snap.length, path: join(localSnapshotDir(stateDir), '20261121T010000Z-bbbb.db') });
  });

  it('orders backups of the same second by when their copies arrived: the random suffix says nothing of time', async () => {
    const snap = fakeSnapshot(4);
    await copy('20261121T010000Z-ffff', snap, { keptAt: '2026-11-21T01:00:01.100Z' });
    await copy('20261121T010000Z-0000', snap, { keptAt: '2026-11-21T01:00:01.900Z' });
    await copy('20261120T235959Z-ffff', snap, { keptAt: '2026-11-21T02:00:00.000Z' });
    expect((await listLocalSnapshots(stateDir)).map((c) => c.backupId)).to.deep.equal([
      '20261121T010000Z-0000',
      '20261121T010000Z-ffff',
      '20261120T235959Z-ffff',
    ]);
  });

  it('has nothing to offer before any copy was kept', async () => {
    await rm(localSnapshotDir(stateDir), { recursive: true });
    expect(await listLocalSnapshots(stateDir)).to.deep.equal([]);
  });
});

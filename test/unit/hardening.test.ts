import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import fc from 'fast-check';
import { RestoreLock } from '../../agent/restore/exclusive.js';
import { KburError } from '../../shared/errors.js';
import { Metadata, fromMetadataText, status, toMetadataText } from '../../shared/grpc-status.js';
import { toStatus } from '../../agent/server.js';
import { checkName } from '../../shared/manifest.js';

describe('error text in gRPC metadata', () => {
  it('turns any text, NULs and newlines included, into a legal metadata value that reads back the same', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (text) => {
        const value = toMetadataText(text);
        expect(value).to.match(/^[ -~]*$/);
        new Metadata().set('kbur-hint', value);
        expect(fromMetadataText(value)).to.equal(text);
      }),
      { numRuns: 2000 },
    );
    expect(toMetadataText('define "a\u0000b" — or 100%')).to.equal('define "a%00b" %E2%80%94 or 100%25');
  });
});

describe("the agent's error statuses", () => {
  it('carry request text safely: a NUL in a hint, a 100 KB message cut short', () => {
    const st = toStatus(new KburError('NOT_FOUND', `no profile ${'x'.repeat(100_000)}`, { hint: 'define "a\u0000b"' }));
    expect(st.code).to.equal(status.NOT_FOUND);
    expect(st.details!.length).to.be.below(1100);
    expect(st.details).to.match(/\.\.\. \(\d+ more characters\)$/);
    expect(st.metadata!.get('kbur-hint')).to.deep.equal(['define "a%00b"']);
    expect(st.metadata!.get('kbur-code')).to.deep.equal(['NOT_FOUND']);
  });
});

describe('names that become paths or arguments', () => {
  it('takes only plain names: never an option, a path, a control character or an empty name', () => {
    for (const ok of ['appdb', 'app_db-1', '$x', 'A9']) expect(checkName('database', ok)).to.equal(ok);
    for (const bad of ['', '-x', '--all', 'a/b', '..', '.', 'a b', 'a\u0000b', 'x'.repeat(65)]) {
      expect(() => checkName('database', bad), JSON.stringify(bad)).to.throw(KburError, /database name/);
    }
    expect(() => checkName('profile', 'a\u0000b')).to.throw(/"a\\u0000b" is not a profile name/);
  });

  it('refuses every name with a / or a leading - (property)', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (a, b) => {
        expect(() => checkName('part', `${a}/${b}`)).to.throw(KburError);
        expect(() => checkName('part', `-${a}`)).to.throw(KburError);
      }),
    );
  });
});

describe('one restore at a time on an agent', () => {
  it('refuses a step of another restore while one runs, and queues steps of the same restore', async () => {
    const lock = new RestoreLock();
    const order: string[] = [];
    let release!: () => void;
    const first = lock.run('20261130T120000Z-0001', 'StopControlPlane', async () => {
      order.push('first');
      await new Promise<void>((r) => (release = r));
      return 'stopped';
    });
    const other = lock.run('20261130T120000Z-0002', 'StopControlPlane', async () => 'never');
    const same = lock.run('20261130T120000Z-0001', 'RestoreEtcdMember', async () => {
      order.push('same');
      return 'restored';
    });
    const refused = await other.then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(KburError.hasCode(refused, 'FAILED_PRECONDITION')).to.equal(true);
    expect((refused as Error).message).to.equal('restore 20261130T120000Z-0001 is running StopControlPlane on this node right now');
    await new Promise((r) => setImmediate(r));
    release();
    expect(await first).to.equal('stopped');
    expect(await same).to.equal('restored');
    expect(order).to.deep.equal(['first', 'same']);
    expect(await lock.run('20261130T120000Z-0002', 'StopControlPlane', async () => 'free again')).to.equal('free again');
  });

  it("refuses a step while another agent process on the same state dir holds restore.lock; a dead one's file is taken over", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kbur-unit-lock-'));
    const other = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      await writeFile(
        join(dir, 'restore.lock'),
        JSON.stringify({ pid: other.pid, restoreId: '20261130T120000Z-0001', step: 'StopControlPlane' }),
      );
      const lock = new RestoreLock();
      const refused = await lock.run('20261130T120000Z-0002', 'StopControlPlane', async () => 'never', dir).catch((e: unknown) => e);
      expect(KburError.hasCode(refused, 'FAILED_PRECONDITION'), String(refused)).to.equal(true);
      expect((refused as Error).message).to.equal(
        `restore 20261130T120000Z-0001 is running StopControlPlane on this node right now (agent process ${other.pid})`,
      );
      other.kill('SIGKILL');
      await once(other, 'exit');
      let during = '';
      const ran = await lock.run(
        '20261130T120000Z-0002',
        'StopControlPlane',
        async () => {
          during = await readFile(join(dir, 'restore.lock'), 'utf8');
          return 'ran';
        },
        dir,
      );
      expect(ran).to.equal('ran');
      expect(JSON.parse(during)).to.deep.equal({ pid: process.pid, restoreId: '20261130T120000Z-0002', step: 'StopControlPlane' });
      await lock.run('20261130T120000Z-0003', 'StartEtcd', async () => undefined, dir);
      await new Promise((r) => setTimeout(r, 50));
      expect(await readdir(dir), 'the file goes with the lock').to.deep.equal([]);
    } finally {
      other.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('is free again after a step that failed', async () => {
    const lock = new RestoreLock();
    await lock.run('20261130T120000Z-0001', 'StartEtcd', () => Promise.reject(new Error('boom'))).catch(() => undefined);
    expect(await lock.run('20261130T120000Z-0002', 'StartEtcd', async () => 'ok')).to.equal('ok');
  });
});

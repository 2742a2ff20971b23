// One operation at a time per cluster, on a real sandbox: concurrent backups, concurrent resumes of
// one restore, and a repository that runs out of room mid-backup.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import type { Etcd3 } from 'etcd3';
import { parse, stringify } from 'yaml';
import { ExitCode as EXIT } from '../../coordinator/exit-codes.js';
import type { Manifest } from '../../shared/manifest.js';
import { createSandbox, waitForEtcdHealthy, type Sandbox } from '../sandbox/cluster.js';
import { etcdClient, putBulk } from '../helpers/etcd.js';
import { runKbur, type KburRun } from '../helpers/kbur.js';

const exec = promisify(execFile);

describe('one operation at a time per cluster (repository lock)', function () {
  this.timeout(300_000);
  let root: string;
  let sandbox: Sandbox;
  let etcd: Etcd3;
  const kbur = (...args: string[]): Promise<KburRun> => runKbur(['--config', sandbox.coordinatorConfig, ...args]);
  const backupIds = async (): Promise<string[]> => (await readdir(join(sandbox.repoDir, 'sandbox', 'backups')).catch(() => [])).sort();

  before(async function () {
    root = await mkdtemp(join(tmpdir(), 'kbur-lock-test-'));
    sandbox = await createSandbox({ root });
    await sandbox.startAgents();
    etcd = await etcdClient(sandbox);
  });

  after(async function () {
    etcd?.close();
    await sandbox?.stop();
    await rm(root, { recursive: true, force: true });
  });

  it('runs one of two backups started together and refuses the other, naming the running one; never both write', async function () {
    const before = await backupIds();
    const [a, b] = await Promise.all([kbur('backup', '--json'), kbur('backup', '--json')]);
    const ran = [a, b].filter((r) => r.code === EXIT.OK);
    const refused = [a, b].filter((r) => r.code === EXIT.LOCKED);
    expect(ran, a.stderr + b.stderr).to.have.length(1);
    expect(refused).to.have.length(1);
    expect(refused[0]!.stderr).to.match(
      /the repository of cluster sandbox is locked by backup on host \S+, pid \d+, since \S+ \(\d+ s ago\)/,
    );
    const m = JSON.parse(ran[0]!.stdout) as Manifest;
    expect(await backupIds()).to.deep.equal([...before, m.id].sort());
  });

  it('runs two backups started together with --wait one after the other, never overlapping', async function () {
    const runs = await Promise.all([kbur('backup', '--json', '--wait', '2m'), kbur('backup', '--json', '--wait', '2m')]);
    for (const r of runs) expect(r.code, r.stderr).to.equal(EXIT.OK);
    const [first, second] = runs.map((r) => JSON.parse(r.stdout) as Manifest).sort((x, y) => (x.startedAt < y.startedAt ? -1 : 1));
    expect(Date.parse(second!.startedAt)).to.be.at.least(Date.parse(first!.finishedAt));
    expect(runs.some((r) => r.stderr.includes('waiting up to 120 s for the repository lock, held by backup'))).to.equal(true);
  });

  it('runs exactly one of two `restore --resume` of one interrupted restore started together', async function () {
    const m = JSON.parse((await kbur('backup', '--json')).stdout) as Manifest;
    const crashed = await runKbur(['--config', sandbox.coordinatorConfig, 'restore', m.id, '--yes'], {
      KBUR_FAILPOINT: 'crash-after:stage',
    });
    const rid = /restore (\S+) started/.exec(crashed.stdout)?.[1];
    expect(rid, crashed.stdout + crashed.stderr).to.be.a('string');

    const both = await Promise.all([kbur('restore', '--resume', rid!, '--yes'), kbur('restore', '--resume', rid!, '--yes')]);
    const ran = both.filter((r) => r.code === EXIT.OK);
    const refused = both.filter((r) => r.code === EXIT.LOCKED);
    expect(ran, both.map((r) => `${r.code}: ${r.stdout}${r.stderr}`).join('\n')).to.have.length(1);
    expect(refused).to.have.length(1);
    expect(refused[0]!.stderr).to.contain(`locked by restore ${rid} on host`);
    // The steps ran once: each node's stop entry is in the journal once.
    const journal = JSON.parse(await readFile(join(sandbox.repoDir, 'sandbox', 'restores', rid!, 'journal.json'), 'utf8')) as {
      status: string;
      entries: { step: string; node: string; state: string }[];
    };
    expect(journal.status).to.equal('completed');
    expect(journal.entries.filter((e) => e.step === 'stop' && e.state === 'started')).to.have.length(sandbox.nodes.length);
    await waitForEtcdHealthy(sandbox);
  });

  describe('a repository that fills up', function () {
    let mount: string | undefined;
    let config: string;
    let sealedConfig: string;

    before(async function () {
      // A tmpfs too small for the snapshot: only root can mount one.
      const dir = join(root, 'small-repo');
      await mkdir(dir);
      try {
        await exec('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'tmpfs', dir]);
        mount = dir;
      } catch (err) {
        console.log(`    (skipped: cannot mount a tmpfs here: ${(err as Error).message.split('\n')[0]})`);
        this.skip();
      }
      const c = parse(await readFile(sandbox.coordinatorConfig, 'utf8')) as { repository: { path: string } };
      c.repository.path = dir;
      config = join(root, 'kbur-small.yaml');
      await writeFile(config, stringify(c), { mode: 0o600 });
      // The same, encrypted: the full disk is then hit behind the sealing stages.
      await exec('age-keygen', ['-o', join(root, 'age.key')]);
      const recipient = (await exec('age-keygen', ['-y', join(root, 'age.key')])).stdout.trim();
      sealedConfig = join(root, 'kbur-small-sealed.yaml');
      await writeFile(sealedConfig, stringify({ ...c, encryption: { recipients: [recipient] } }), { mode: 0o600 });
      await putBulk(etcd, '/registry/bulk/', 6);
    });

    after(async function () {
      await etcd.delete().prefix('/registry/bulk/');
      if (mount) await exec('umount', [mount]);
    });

    it('says "repository full" at once with the figures, exits 13, asks no other member, and leaves nothing behind', async function () {
      const calls = async (): Promise<number> => {
        let n = 0;
        for (const node of sandbox.nodes) {
          const log = await readFile(join(sandbox.root, 'logs', `agent-${node.name}.log`), 'utf8');
          n += log.split('\n').filter((l) => l.includes('"method":"SnapshotEtcd"') && l.includes('stream started')).length;
        }
        return n;
      };
      const before = await calls();
      const started = Date.now();
      const run = await runKbur(['--config', config, 'backup']);
      expect(run.code, run.stdout + run.stderr).to.equal(EXIT.REPOSITORY_FULL);
      const figures =
        /kbur: error: repository full \(ENOSPC\) at \S+\/sandbox\/backups\/\S+: (\d+\.\d) MiB free of 2\.0 MiB; this backup had written (\d+\.\d) MiB; it needs at least (\d+\.\d) MiB \(the etcd database size\)/.exec(
          run.stderr,
        );
      expect(figures, run.stderr).to.not.equal(null);
      expect(Number(figures![1]), 'free when it filled up').to.be.below(0.5);
      expect(Number(figures![2]), 'written').to.be.above(1);
      expect(Number(figures![3]), 'needed').to.be.above(2);
      expect(run.stderr).to.contain('what to do: make room in the repository');
      expect(Date.now() - started, 'no stall timeout, no retries').to.be.below(30_000);
      expect((await calls()) - before, 'one snapshot asked for, no other member tried').to.equal(1);
      expect(await readdir(join(mount!, 'sandbox', 'backups'))).to.deep.equal([]);
      expect(await readdir(join(mount!, 'sandbox')), 'and the lock released').to.deep.equal(['backups']);
    });

    it('says the same when the disk fills behind encryption', async function () {
      const started = Date.now();
      const run = await runKbur(['--config', sealedConfig, 'backup']);
      expect(run.code, run.stdout + run.stderr).to.equal(EXIT.REPOSITORY_FULL);
      expect(run.stderr).to.match(/kbur: error: repository full \(ENOSPC\) at \S+: \d+\.\d MiB free of 2\.0 MiB; this backup had written/);
      expect(Date.now() - started, 'no stall timeout, no retries').to.be.below(30_000);
      expect(await readdir(join(mount!, 'sandbox', 'backups'))).to.deep.equal([]);
    });
  });
});

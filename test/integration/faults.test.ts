// The fault campaign: a process killed or interrupted at the worst moment, and what kbur reports
// and leaves. Each case checks the same three things: a clear outcome, nothing half-written that
// looks whole, nothing of the user's lost. The README's reliability table lists these cases.
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import type { Etcd3 } from 'etcd3';
import type { Manifest } from '../../shared/manifest.js';
import { STEPS } from '../../coordinator/restore/journal.js';
import { ExitCode as EXIT } from '../../coordinator/exit-codes.js';
import { createSandbox, waitForEtcdHealthy, type Sandbox } from '../sandbox/cluster.js';
import { etcdClient, putBulk } from '../helpers/etcd.js';
import { runKbur, spawnKbur, type KburRun } from '../helpers/kbur.js';

async function walk(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

describe('faults: processes killed or interrupted mid-operation', function () {
  this.timeout(300_000);
  let root: string;
  let sandbox: Sandbox;
  let etcd: Etcd3;
  const kbur = (...args: string[]): Promise<KburRun> => runKbur(['--config', sandbox.coordinatorConfig, ...args]);
  const backupsDir = (): string => join(sandbox.repoDir, 'sandbox', 'backups');
  const keys = async (): Promise<string[]> =>
    (await sandbox.etcdctl(['get', '--prefix', '/registry/', '--keys-only'])).split('\n').filter(Boolean).sort();
  const healthy = (): Promise<void> => waitForEtcdHealthy(sandbox);

  /** Polls until the backup's snapshot bytes reach the repository; the path of its part file. */
  async function snapshotPartWritten(): Promise<string> {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      for (const f of await walk(backupsDir()).catch(() => [])) {
        if (f.endsWith('snapshot.db.part') && (await stat(f).catch(() => undefined))?.size) return f;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error('the snapshot stream never reached the repository');
  }

  /** The node whose agent log shows one more SnapshotEtcd call than `before`. */
  async function snapshotCalls(): Promise<Map<string, number>> {
    const counts = await Promise.all(
      sandbox.nodes.map(async (n) => {
        const log = await readFile(join(sandbox.root, 'logs', `agent-${n.name}.log`), 'utf8');
        return [n.name, log.split('"method":"SnapshotEtcd"').length] as const;
      }),
    );
    return new Map(counts);
  }

  before(async function () {
    root = await mkdtemp(join(tmpdir(), 'kbur-faults-test-'));
    sandbox = await createSandbox({ root });
    await sandbox.startAgents();
    etcd = await etcdClient(sandbox);
    // Enough data that a snapshot stream lasts long enough to be cut.
    await putBulk(etcd, '/registry/bulk/', 40);
  });

  after(async function () {
    etcd?.close();
    await sandbox?.stop();
    await rm(root, { recursive: true, force: true });
  });

  it('agent of the snapshotted member SIGKILLed mid-stream: the snapshot of another member, or Failed; never a truncated file', async function () {
    const before = await snapshotCalls();
    const { child, done } = spawnKbur(['--config', sandbox.coordinatorConfig, 'backup', '--json']);
    await snapshotPartWritten();
    child.kill('SIGSTOP');
    const after = await snapshotCalls();
    const victim = sandbox.nodes.find((n) => after.get(n.name)! > before.get(n.name)!)!.name;
    await sandbox.stopAgent(victim, 'SIGKILL');
    child.kill('SIGCONT');
    const run = await done;

    const m = JSON.parse(run.stdout) as Manifest;
    expect([EXIT.OK, EXIT.BACKUP_PARTIALLY_FAILED, EXIT.BACKUP_FAILED], run.stderr).to.include(run.code);
    if (m.phase === 'Failed') expect(m.artifacts.map((a) => a.path)).to.not.include('etcd/snapshot.db');
    else {
      expect(m.etcd!.node, 'another member gave the snapshot').to.not.equal(victim);
      // The dead agent's node archive is the only part missing.
      expect(m.failures.map((f) => f.part)).to.deep.equal([`node/${victim}`]);
    }
    expect((await walk(join(backupsDir(), m.id))).filter((f) => f.endsWith('.part'))).to.deep.equal([]);
    const verify = await kbur('verify', m.id);
    expect(verify.code, verify.stdout + verify.stderr).to.equal(EXIT.OK);
    await sandbox.startAgents([victim]);
  });

  it('coordinator SIGKILLed mid-stream: the set has no manifest, lists as Incomplete, its lock is stale until unlock --force, verify and restore refuse it, the next backup removes it', async function () {
    const { child, done } = spawnKbur(['--config', sandbox.coordinatorConfig, 'backup', '--json']);
    const part = await snapshotPartWritten();
    child.kill('SIGKILL');
    await done;
    const id = part.split('/').at(-3)!;
    const files = await walk(join(backupsDir(), id));
    expect(files.map((f) => f.split('/').at(-1))).to.not.include('manifest.json');

    const list = await kbur('list', '--json');
    const listed = (JSON.parse(list.stdout) as { id: string; phase?: string }[]).find((b) => b.id === id);
    expect(listed?.phase).to.equal('Incomplete');
    const verify = await kbur('verify', id);
    expect(verify.code).to.equal(EXIT.FAILED_PRECONDITION);
    const locked = await kbur('restore', id, '--yes');
    expect(locked.code, locked.stderr).to.equal(EXIT.LOCK_STALE);
    expect(locked.stderr).to.contain(`locked by backup on host`).and.contain(`pid ${child.pid}`).and.contain('kbur unlock --force');
    const unlock = await kbur('unlock', '--force');
    expect(unlock.code, unlock.stderr).to.equal(EXIT.OK);
    expect(unlock.stdout)
      .to.contain(`broke the stale lock of backup on host`)
      .and.contain(`process ${child.pid} no longer runs on this host`);
    const restore = await kbur('restore', id, '--yes');
    expect(restore.code).to.equal(EXIT.FAILED_PRECONDITION);
    expect(await keys()).to.include('/registry/bulk/000000');

    const next = await kbur('backup', '--json');
    expect(next.code, next.stderr).to.equal(EXIT.OK);
    expect((JSON.parse(next.stdout) as { leftoversRemoved: { id: string }[] }).leftoversRemoved.map((l) => l.id)).to.deep.equal([id]);
    expect(await readdir(backupsDir())).to.not.include(id);
  });

  // A step's line is printed as it ends on a node; SIGINT follows it at once, and --resume must
  // finish the restore from there. The last steps take milliseconds: kbur may finish them first.
  const interruptible = STEPS.filter((s) => s !== 'restore-kubernetes');
  for (const step of interruptible) {
    it(`SIGINT as the ${step} step reports, then --resume: the backup's keys, every old data dir kept`, async function () {
      await etcd.delete().prefix('/registry/bulk/');
      const backup = await kbur('backup', '--json');
      expect(backup.code, backup.stderr).to.equal(EXIT.OK);
      const m = JSON.parse(backup.stdout) as Manifest;
      const wanted = await keys();
      await etcd.put('/registry/configmaps/demo/after-backup').value('x');

      const { child, done } = spawnKbur(['--config', sandbox.coordinatorConfig, 'restore', m.id, '--yes']);
      let sent = false;
      const watch = (chunk: Buffer): void => {
        if (
          !sent &&
          chunk
            .toString()
            .split('\n')
            .some((l) => l.startsWith(`${step} `) || l.startsWith(`${step}:`))
        ) {
          sent = true;
          child.kill('SIGINT');
        }
      };
      child.stdout!.on('data', watch);
      const first = await done;
      const rid = /restore (\S+) started/.exec(first.stdout)?.[1];
      expect(rid, first.stdout + first.stderr).to.be.a('string');
      expect(sent, `the ${step} step printed: ${first.stdout}`).to.equal(true);
      // Until etcd is started, each next step waits seconds (etcd stopping, etcd starting): kbur
      // must notice the signal there. After that it may well finish first, and must say so; a
      // signal landing while it closes its connections then ends it as a signal does (128 here).
      const completed = first.stdout.includes('completed and verified');
      const mayFinish = STEPS.indexOf(step) >= STEPS.indexOf('wait-quorum');
      if (!mayFinish || !completed) expect(first.code, first.stdout + first.stderr).to.equal(EXIT.CANCELLED);
      else expect([EXIT.CANCELLED, EXIT.OK, 128], first.stdout + first.stderr).to.include(first.code);
      expect(first.stdout + first.stderr).to.contain(rid!);

      if (!completed) {
        const resumed = await kbur('restore', '--resume', rid!, '--yes');
        expect(resumed.code, resumed.stdout + resumed.stderr).to.equal(EXIT.OK);
      }
      await healthy();
      expect(await keys()).to.deep.equal(wanted);
      for (const node of sandbox.nodes) {
        const names = await readdir(node.dir);
        if (STEPS.indexOf(step) > STEPS.indexOf('stop')) expect(names, node.name).to.include(`etcd-data.kbur-${rid}`);
      }
    });
  }
});

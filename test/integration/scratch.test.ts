import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, truncate, writeFile, copyFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { parse, stringify } from 'yaml';
import type { Etcd3 } from 'etcd3';
import type { Manifest, Verification } from '../../shared/manifest.js';
import { ScratchEtcd, freePorts } from '../../coordinator/scratch/etcd.js';
import { parseKey, summarizeKeys } from '../../coordinator/scratch/keys.js';
import { createSandbox, type Sandbox } from '../sandbox/cluster.js';
import { clientAfterRestore, etcdClient } from '../helpers/etcd.js';
import { runKbur, spawnKbur } from '../helpers/kbur.js';

const exec = promisify(execFile);

async function sha256(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
}

/** PIDs of the processes whose command line mentions every one of `texts` (a scratch folder, an etcd flag). */
async function processesMentioning(...texts: string[]): Promise<number[]> {
  const pids: number[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (texts.every((t) => cmdline.includes(t))) pids.push(Number(pid));
  }
  return pids;
}

describe('a backup proven in a scratch etcd: verify --deep, restore --namespace, diff, import', function () {
  this.timeout(240_000);
  let root: string;
  let sandbox: Sandbox;
  let etcd: Etcd3;
  const kbur = (...args: string[]) => runKbur(['--config', sandbox.coordinatorConfig, ...args]);
  const backupDir = (id: string): string => join(sandbox.repoDir, 'sandbox', 'backups', id);
  const scratchDir = (): string => join(root, 'scratch');
  /** A scratch etcd started from backup `m`'s snapshot, in the suite's scratch folder. */
  const scratchOf = (m: Manifest): Promise<ScratchEtcd> =>
    ScratchEtcd.start({ snapshot: join(backupDir(m.id), 'etcd/snapshot.db'), dir: scratchDir(), signal: new AbortController().signal });

  /** Every key of the cluster with its value, base64: what "unchanged" is compared on. */
  async function dump(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    const all = await etcd.getAll().buffers();
    for (const [k, v] of Object.entries(all)) out[k] = v.toString('base64');
    return out;
  }

  async function backup(...flags: string[]): Promise<Manifest & { verification?: Verification }> {
    const run = await kbur('backup', '--json', ...flags);
    expect(run.code, run.stderr).to.equal(0);
    return JSON.parse(run.stdout) as Manifest & { verification?: Verification };
  }

  async function scratchLeftovers(): Promise<string[]> {
    return (await readdir(scratchDir()).catch(() => [] as string[])).filter((n) => n.startsWith('kbur-scratch-'));
  }

  before(async function () {
    root = await mkdtemp(join(tmpdir(), 'kbur-scratch-test-'));
    sandbox = await createSandbox({ root });
    await sandbox.startAgents();
    etcd = await etcdClient(sandbox);
  });

  after(async function () {
    etcd?.close();
    await sandbox?.stop();
    await rm(root, { recursive: true, force: true });
  });

  describe('kbur verify --deep', function () {
    it('backup --verify deep starts the snapshot in a scratch etcd, matches the manifest, and records it for list and describe', async function () {
      const m = await backup('--verify', 'deep');
      const deep = m.verification!.deep!;
      expect(deep.ok, deep.problems.join('; ')).to.equal(true);
      expect(deep.revision).to.equal(m.etcd!.revision);
      expect(deep.keyCount).to.equal(m.etcd!.keyCount);
      expect(deep.byResource).to.include({ configmaps: 21, secrets: 3, namespaces: 3, deployments: 1 });
      expect(deep.byNamespace).to.include({ demo: 24, 'kube-system': 1 });
      expect(deep.namespaces).to.equal(3);

      const recorded = JSON.parse(await readFile(join(backupDir(m.id), 'verify.json'), 'utf8')) as Verification;
      expect(recorded.deep!.ok).to.equal(true);
      const manifest = JSON.parse(await readFile(join(backupDir(m.id), 'manifest.json'), 'utf8')) as Record<string, unknown>;
      expect(manifest).to.not.have.property('deep');
      expect(manifest).to.not.have.property('verification');

      const list = await kbur('list');
      expect(list.stdout).to.match(new RegExp(`${m.id}.*verified \\(deep\\) at ${deep.verifiedAt}`));
      const describe = await kbur('describe', m.id);
      expect(describe.stdout).to.contain(`Verified (deep) at ${deep.verifiedAt}: the snapshot restores; revision ${m.etcd!.revision}`);
      // A later plain verify keeps what the deep one found.
      expect((await kbur('verify', m.id)).code).to.equal(0);
      expect((await kbur('list')).stdout).to.match(new RegExp(`${m.id}.*verified \\(deep\\) at ${deep.verifiedAt}`));
      expect(await scratchLeftovers()).to.deep.equal([]);
    });

    it("fails the comparison when another cluster's snapshot replaces the right one (valid etcd hash, sha256 and size fixed in the manifest)", async function () {
      const m = await backup();
      // Another cluster: a scratch etcd started from this very snapshot is a cluster of its own; a few writes make it differ.
      const other = await scratchOf(m);
      const foreign = join(root, 'other-cluster.db');
      try {
        await other.client.put('/registry/configmaps/elsewhere/x').value('from another cluster');
        await other.client.delete().key('/registry/secrets/demo/api-token');
        await exec('etcdctl', ['--endpoints', other.endpoint, 'snapshot', 'save', foreign], {
          env: { PATH: process.env.PATH, ETCDCTL_API: '3' },
        });
      } finally {
        await other.close();
      }
      const snapshot = join(backupDir(m.id), 'etcd/snapshot.db');
      await copyFile(foreign, snapshot);
      const manifestFile = join(backupDir(m.id), 'manifest.json');
      const manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as Manifest;
      manifest.artifacts[0]!.sha256 = await sha256(snapshot);
      manifest.artifacts[0]!.size = (await stat(snapshot)).size;
      await writeFile(manifestFile, JSON.stringify(manifest));

      expect((await kbur('verify', m.id)).code, 'the hashes alone cannot tell').to.equal(0);
      const run = await kbur('verify', '--deep', m.id);
      expect(run.code, run.stdout + run.stderr).to.equal(5);
      expect(run.stdout).to.match(/deep: FAILED: revision \d+, manifest says \d+/);
      expect(run.stdout).to.contain('objects in namespaces that have no namespace object: elsewhere');
      const recorded = JSON.parse(await readFile(join(backupDir(m.id), 'verify.json'), 'utf8')) as Verification;
      expect(recorded.ok).to.equal(false);
      expect(recorded.deep!.ok).to.equal(false);
      expect((await kbur('list')).stdout).to.match(new RegExp(`${m.id}.*FAILED at`));
      expect(await scratchLeftovers()).to.deep.equal([]);
    });

    it('counts the keys as a full listing of the keyspace would, listed or walked group by group (outside /registry/ counted), in an etcd of one member', async function () {
      const m = await backup();
      const scratch = await scratchOf(m);
      try {
        for (const key of ['\u0001', '/a', '/registry', '/registry/x', '/registrz', 'compact_rev_key', '\u00ff\u00ff']) {
          await scratch.client.put(Buffer.from(key, 'latin1')).value('outside');
        }
        // Keys that test where a group of one resource and namespace ends, and keys of no group.
        for (const key of [
          '/registry/',
          '/registry/!x/ns-a/n',
          '/registry/configmaps/ns-a/',
          '/registry/configmaps/ns-a/c1',
          '/registry/configmaps/ns-a/c2',
          '/registry/configmaps/ns-a0/c',
          '/registry/configmaps/ns-b/deep/name',
          '/registry/configmaps/ns-b',
          '/registry/namespaces/ns-a',
          '/registry/namespaces/ns-a0',
          '/registry/clusterroles/ns-a',
          '/registry/clusterroles/',
          '/registry/apiregistration.k8s.io/apiservices/v1.apps',
          '/registry/cert-manager.io/certificates/ns-a/c',
          '/registry/cert-manager.io/certificates/ns-b/c',
          '/registry/foo.bar/x',
          '/registry/foo.bar/x/y/z',
          '/registry/services/specs/ns-a/svc',
          '/registry/services/endpoints/ns-b/svc',
          '/registry/services/x',
          '/registry/x/',
        ]) {
          await scratch.client.put(Buffer.from(key, 'latin1')).value('inside');
        }
        const all = await scratch.client.getAll().keys('latin1');
        const byResource: Record<string, number> = {};
        const byNamespace: Record<string, number> = {};
        const namespaceObjects = new Set<string>();
        for (const key of all) {
          const k = parseKey(key);
          byResource[k.resource] = (byResource[k.resource] ?? 0) + 1;
          if (k.namespace !== undefined) byNamespace[k.namespace] = (byNamespace[k.namespace] ?? 0) + 1;
          if (k.resource === 'namespaces' && k.namespace === undefined) namespaceObjects.add(k.name);
        }
        for (const walk of ['list', 'groups', 'auto'] as const) {
          const summary = await summarizeKeys(scratch.client, undefined, walk);
          expect(summary.keyCount, walk).to.equal(all.length);
          expect(summary.byResource, walk).to.deep.equal(byResource);
          expect(summary.byNamespace, walk).to.deep.equal(byNamespace);
          expect(summary.namespacesWithoutObject, walk).to.deep.equal(
            Object.keys(byNamespace)
              .filter((n) => !namespaceObjects.has(n))
              .sort(),
          );
          expect(summary.byResource['(other)'], walk).to.be.at.least(7);
          expect(summary.byNamespace['ns-b'], walk).to.equal(3);
        }
        // etcd 3.4 starts it without the restore tool's v2 snapshot file: its one member comes from the WAL.
        const { members } = await scratch.client.cluster.memberList({});
        expect(members.map((x) => [x.name, x.clientURLs])).to.deep.equal([[scratch.member, [scratch.endpoint]]]);
      } finally {
        await scratch.close();
      }
    });

    it("tells its etcd from another kbur's scratch etcd that took its port, and reads only its own snapshot", async function () {
      await etcd.put('kbur-test/who').value('first');
      const first = await backup();
      await etcd.put('kbur-test/who').value('second');
      const second = await backup();
      const other = await scratchOf(first);
      try {
        // The second one is handed the port the first one serves on, as if that had been taken after it was found free.
        const ports = { client: Number(new URL(other.endpoint).port), peer: (await freePorts(1))[0]! };
        const scratch = await ScratchEtcd.start({
          snapshot: join(backupDir(second.id), 'etcd/snapshot.db'),
          dir: scratchDir(),
          ports,
          signal: new AbortController().signal,
        });
        try {
          expect(scratch.endpoint).to.not.equal(other.endpoint);
          expect(scratch.member).to.not.equal(other.member);
          expect(await scratch.client.get('kbur-test/who').string()).to.equal('second');
          expect(await other.client.get('kbur-test/who').string()).to.equal('first');
        } finally {
          await scratch.close();
        }
      } finally {
        await other.close();
        await etcd.delete().key('kbur-test/who');
      }
    });

    it('starts on ports of its own when something that is not etcd holds its client port, and leaves no poll running', async function () {
      const m = await backup();
      const squatter = createServer((socket) => socket.destroy());
      await new Promise<void>((res) => squatter.listen(0, '127.0.0.1', res));
      const taken = (squatter.address() as AddressInfo).port;
      const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
      const before = timers();
      try {
        const scratch = await ScratchEtcd.start({
          snapshot: join(backupDir(m.id), 'etcd/snapshot.db'),
          dir: scratchDir(),
          ports: { client: taken, peer: (await freePorts(1))[0]! },
          signal: new AbortController().signal,
        });
        try {
          expect(scratch.endpoint).to.not.equal(`http://127.0.0.1:${taken}`);
          expect((await scratch.client.cluster.memberList({})).members.map((x) => x.name)).to.deep.equal([scratch.member]);
        } finally {
          await scratch.close();
        }
      } finally {
        await new Promise((res) => squatter.close(res));
      }
      // The readiness poll of the first try, on the squatter's port, ends with that try: it would keep a
      // timer pending all the time; others' timers come and go, hence the least of several looks.
      const seen: number[] = [];
      for (let i = 0; i < 10; i++) {
        await new Promise((r) => setTimeout(r, 30));
        seen.push(timers());
      }
      expect(Math.min(...seen)).to.be.at.most(before);
    });

    it('fails a truncated snapshot before any etcd starts', async function () {
      const m = await backup();
      const snapshot = join(backupDir(m.id), 'etcd/snapshot.db');
      await truncate(snapshot, (await stat(snapshot)).size - 1000);
      const run = await kbur('verify', '--deep', m.id);
      expect(run.code).to.equal(5);
      expect(run.stdout).to.contain('MISMATCH etcd/snapshot.db');
      expect(run.stdout).to.match(/deep: FAILED: snapshot etcd\/snapshot.db of backup \S+ is damaged: .*truncated.*; etcd was not started/);
      expect(await scratchLeftovers()).to.deep.equal([]);
    });

    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
      it(`leaves no scratch process or file after a ${signal} in the middle`, async function () {
        const m = await backup();
        const { child, done } = spawnKbur(['--config', sandbox.coordinatorConfig, 'verify', '--deep', m.id], {
          KBUR_FAILPOINT: 'hold-scratch',
        });
        let folder: string | undefined;
        let etcdPids: number[] = [];
        while (!etcdPids.length) {
          if (child.exitCode !== null) expect.fail(`kbur ended first: ${(await done).stderr}`);
          folder = (await scratchLeftovers())[0];
          if (folder) etcdPids = await processesMentioning('--listen-client-urls', join(scratchDir(), folder));
          await new Promise((r) => setTimeout(r, 50));
        }
        child.kill(signal);
        const run = await done;
        expect(run.code, run.stderr).to.equal(10);
        expect(await scratchLeftovers()).to.deep.equal([]);
        expect(await processesMentioning(join(scratchDir(), folder!))).to.deep.equal([]);
      });
    }

    it('stops and removes, at its next start, the scratch etcd of a kbur that was SIGKILLed', async function () {
      const m = await backup();
      const { child, done } = spawnKbur(['--config', sandbox.coordinatorConfig, 'verify', '--deep', m.id], {
        KBUR_FAILPOINT: 'hold-scratch',
      });
      let folder: string | undefined;
      let etcdPids: number[] = [];
      while (!etcdPids.length) {
        if (child.exitCode !== null) expect.fail(`kbur ended first: ${(await done).stderr}`);
        folder = (await scratchLeftovers())[0];
        if (folder) etcdPids = await processesMentioning(`--listen-client-urls`, join(scratchDir(), folder, 'data'));
        await new Promise((r) => setTimeout(r, 50));
      }
      child.kill('SIGKILL');
      await done;
      // The etcd may outlive it (or die at its next log line, its stderr gone): its folder stays either way.
      expect(await scratchLeftovers(), 'SIGKILL leaves it behind').to.deep.equal([folder]);

      const next = await kbur('verify', '--deep', m.id);
      expect(next.code, next.stderr).to.equal(0);
      expect(await scratchLeftovers()).to.deep.equal([]);
      expect(await processesMentioning(join(scratchDir(), folder!, 'data'))).to.deep.equal([]);
    });

    it('says how to install etcd when there is none', async function () {
      const m = await backup();
      const run = await runKbur(['--config', sandbox.coordinatorConfig, 'verify', '--deep', m.id], { PATH: '/nonexistent' });
      expect(run.code).to.equal(9);
      expect(run.stderr).to.contain('no etcd binary on this host');
      expect(run.stderr).to.contain('apt-get install etcd-server');

      // After a backup, the backup is still reported whole, and the unit fails for the proof it could not make.
      const after = await runKbur(['--config', sandbox.coordinatorConfig, 'backup', '--verify', 'deep'], { PATH: '/nonexistent' });
      expect(after.code).to.equal(9);
      expect(after.stdout).to.match(/backup \S+: Completed/);
      expect(after.stdout).to.contain('verify: could not run: no etcd binary on this host');
    });
  });

  describe('kbur restore --namespace while the cluster runs', function () {
    it('brings a deleted namespace back byte-for-byte, changes no other key, and a second run creates nothing', async function () {
      const m = await backup();
      const before = await dump();
      await etcd.delete().prefix('/registry/configmaps/demo/');
      await etcd.delete().prefix('/registry/secrets/demo/');
      await etcd.delete().key('/registry/namespaces/demo');
      const now = await dump();
      const deleted = Object.keys(before).filter((k) => !(k in now));
      expect(deleted).to.have.length(24);

      const dry = await kbur('restore', m.id, '--namespace', 'demo', '--dry-run');
      expect(dry.code, dry.stderr).to.equal(0);
      expect(dry.stdout.split('\n')[1]).to.equal('  create    namespaces/demo');
      expect(dry.stdout).to.contain('  exists    deployments/web (left alone)');
      expect(dry.stdout).to.contain('24 to create, 1 exist now and are left alone, 0 left out');
      expect(Object.keys(await dump())).to.have.length(Object.keys(before).length - 24);

      const run = await kbur('restore', m.id, '--namespace', 'demo');
      expect(run.code, run.stdout + run.stderr).to.equal(0);
      expect(run.stdout).to.contain('namespace demo: 24 created, 1 skipped, 0 failed');
      expect(await dump()).to.deep.equal(before);

      const again = await kbur('restore', m.id, '--namespace', 'demo', '--json');
      expect(again.code).to.equal(0);
      const result = JSON.parse(again.stdout) as { created: unknown[]; skipped: unknown[]; failed: unknown[] };
      expect(result.created).to.deep.equal([]);
      expect(result.failed).to.deep.equal([]);
      expect(result.skipped).to.have.length(25);
      expect(await dump()).to.deep.equal(before);
      expect(await scratchLeftovers()).to.deep.equal([]);
    });

    it('leaves out events, leases and pods a controller owns unless --resource names them', async function () {
      const json = (o: unknown): string => JSON.stringify(o);
      await etcd.put('/registry/events/demo/web.1').value(json({ kind: 'Event', metadata: { name: 'web.1' } }));
      await etcd.put('/registry/leases/demo/lock').value(json({ kind: 'Lease', metadata: { name: 'lock' } }));
      await etcd
        .put('/registry/pods/demo/web-1')
        .value(json({ kind: 'Pod', metadata: { name: 'web-1', ownerReferences: [{ kind: 'ReplicaSet' }] } }));
      await etcd.put('/registry/pods/demo/alone').value(json({ kind: 'Pod', metadata: { name: 'alone' } }));
      const m = await backup();
      for (const k of [
        '/registry/events/demo/web.1',
        '/registry/leases/demo/lock',
        '/registry/pods/demo/web-1',
        '/registry/pods/demo/alone',
      ])
        await etcd.delete().key(k);

      const dry = await kbur('restore', m.id, '--namespace', 'demo', '--dry-run');
      expect(dry.stdout).to.contain('  left out  events/web.1: events are recreated by controllers or stale');
      expect(dry.stdout).to.contain('  left out  leases/lock: leases are recreated by controllers or stale');
      expect(dry.stdout).to.contain('  left out  pods/web-1: owned by a controller');
      expect(dry.stdout).to.contain('  create    pods/alone');

      const run = await kbur('restore', m.id, '--namespace', 'demo', '--resource', 'events,pods');
      expect(run.code, run.stderr).to.equal(0);
      expect(run.stdout).to.contain('3 created');
      expect(await etcd.get('/registry/leases/demo/lock').string()).to.equal(null);
      expect(await etcd.get('/registry/pods/demo/web-1').string()).to.not.equal(null);

      const bad = await kbur('restore', m.id, '--namespace', 'demo', '--resource', 'Config Maps');
      expect(bad.code).to.equal(2);
      expect(bad.stderr).to.contain('--resource "Config Maps"');
      const missing = await kbur('restore', m.id, '--namespace', 'nowhere');
      expect(missing.code).to.equal(6);
      expect(missing.stderr).to.contain('has no namespace nowhere');
    });

    it("says what to add to kbur.yaml when it cannot reach the cluster's etcd", async function () {
      const m = await backup();
      const config = parse(await readFile(sandbox.coordinatorConfig, 'utf8')) as Record<string, unknown>;
      delete config.etcd;
      const file = join(root, 'kbur-without-etcd.yaml');
      await writeFile(file, stringify(config), { mode: 0o600 });
      const run = await runKbur(['--config', file, 'restore', m.id, '--namespace', 'demo', '--dry-run']);
      expect(run.code).to.equal(2);
      expect(run.stderr).to.contain("kbur restore --namespace reads the cluster's etcd, and kbur.yaml has no etcd: section");
      expect(run.stderr).to.contain('apiserver-etcd-client');
    });
  });

  describe('on encrypted, compressed sets', function () {
    it('proves one with the identity, says what is missing without, and imports a snapshot sealed as configured', async function () {
      const key = join(root, 'age-key.txt');
      await exec('age-keygen', ['-o', key]);
      const recipient = (await exec('age-keygen', ['-y', key])).stdout.trim();
      const config = parse(await readFile(sandbox.coordinatorConfig, 'utf8')) as Record<string, unknown>;
      const sealed = join(root, 'kbur-sealed.yaml');
      await writeFile(sealed, stringify({ ...config, compression: 'zstd', encryption: { recipients: [recipient] } }), { mode: 0o600 });
      const run = (...args: string[]) => runKbur(['--config', sealed, ...args]);

      const made = await run('backup', '--json');
      expect(made.code, made.stderr).to.equal(0);
      const m = JSON.parse(made.stdout) as Manifest;
      expect(m.artifacts[0]!.path).to.equal('etcd/snapshot.db.zst.age');
      const locked = await run('verify', '--deep', m.id);
      expect(locked.code).to.equal(9);
      expect(locked.stderr).to.contain('etcd/snapshot.db.zst.age is encrypted with age');
      const deep = await run('verify', '--deep', m.id, '--identity', key);
      expect(deep.code, deep.stdout + deep.stderr).to.equal(0);
      expect(deep.stdout).to.match(
        new RegExp(`deep: the snapshot restores and starts: revision ${m.etcd!.revision}, ${m.etcd!.keyCount} keys`),
      );
      const diff = await run('diff', m.id, '--identity', key, '--json');
      expect((JSON.parse(diff.stdout) as { changes: unknown[] }).changes).to.deep.equal([]);

      const file = join(root, 'sealed-import.db');
      await sandbox.etcdctl(['snapshot', 'save', file], { endpoints: [sandbox.nodes[0]!.clientUrl] });
      const imported = await run('import', file, '--json');
      expect(imported.code, imported.stderr).to.equal(0);
      const im = JSON.parse(imported.stdout) as Manifest;
      expect([im.artifacts[0]!.path, im.artifacts[0]!.encryption, im.artifacts[0]!.plaintext!.sha256]).to.deep.equal([
        'etcd/snapshot.db.zst.age',
        'age',
        await sha256(file),
      ]);
      expect((await run('verify', '--deep', im.id, '--identity', key)).code).to.equal(0);
      expect(await scratchLeftovers()).to.deep.equal([]);
    });
  });

  describe('kbur diff', function () {
    it('names exactly the keys of a scripted change set, against the live cluster and against a later backup', async function () {
      const m = await backup();
      await etcd.put('/registry/configmaps/demo/added-1').value('{"kind":"ConfigMap"}');
      await etcd.put('/registry/namespaces/added-ns').value('{"kind":"Namespace"}');
      await etcd.put('/registry/configmaps/demo/app-config-7').value('{"changed":true}');
      await etcd.put('/registry/deployments/demo/web').value('{"changed":true}');
      await etcd.delete().key('/registry/secrets/demo/web-tls');
      await etcd.delete().key('/registry/configmaps/demo/app-config-20');
      const want = [
        { key: '/registry/configmaps/demo/added-1', change: 'added' },
        { key: '/registry/configmaps/demo/app-config-20', change: 'removed' },
        { key: '/registry/configmaps/demo/app-config-7', change: 'changed' },
        { key: '/registry/deployments/demo/web', change: 'changed' },
        { key: '/registry/namespaces/added-ns', change: 'added' },
        { key: '/registry/secrets/demo/web-tls', change: 'removed' },
      ];
      const changes = (stdout: string): { key: string; change: string }[] =>
        (JSON.parse(stdout) as { changes: { key: string; change: string }[] }).changes.map(({ key, change }) => ({ key, change }));

      const live = await kbur('diff', m.id, '--json');
      expect(live.code, live.stderr).to.equal(0);
      expect(changes(live.stdout)).to.deep.equal(want);
      const r = JSON.parse(live.stdout) as { byResource: Record<string, unknown>; byNamespace: Record<string, unknown> };
      expect(r.byResource.configmaps).to.deep.equal({ added: 1, removed: 1, changed: 1 });
      expect(r.byNamespace.demo).to.deep.equal({ added: 1, removed: 2, changed: 2 });

      const later = await backup();
      const against = await kbur('diff', m.id, '--against', later.id, '--json');
      expect(changes(against.stdout)).to.deep.equal(want);
      const ns = await kbur('diff', m.id, '--namespace', 'added-ns', '--json');
      expect(changes(ns.stdout)).to.deep.equal([{ key: '/registry/namespaces/added-ns', change: 'added' }]);
      const human = await kbur('diff', m.id);
      expect(human.stdout).to.contain('2 added, 2 removed, 2 changed');
      expect(human.stdout).to.contain('~ /registry/deployments/demo/web');
      expect(await scratchLeftovers()).to.deep.equal([]);
    });

    it('refuses a bad namespace name', async function () {
      const run = await kbur('diff', '20261125T234512Z-07b3', '--namespace', 'Not_A_Namespace');
      expect(run.code).to.equal(2);
      expect(run.stderr).to.contain('--namespace "Not_A_Namespace": expected a namespace name');
    });
  });

  describe('kbur import', function () {
    it('turns an etcdctl snapshot into a backup set that verify --deep proves and a full restore brings back', async function () {
      const file = join(root, 'cron-snapshot.db');
      await sandbox.etcdctl(['snapshot', 'save', file], { endpoints: [sandbox.nodes[1]!.clientUrl] });
      const before = await dump();
      const args: string[] = [];
      for (const n of sandbox.nodes) {
        const tar = join(root, `${n.name}-kubernetes.tar`);
        await exec('tar', ['-C', n.kubernetesDir, '-cf', tar, '.']);
        args.push('--kubernetes-dir-archive', `${n.name}=${tar}`);
      }
      const imported = await kbur('import', file, ...args, '--json');
      expect(imported.code, imported.stderr).to.equal(0);
      const m = JSON.parse(imported.stdout) as Manifest;
      expect(m.phase).to.equal('Completed');
      expect(m.etcd!.members.map((x) => x.name).sort()).to.deep.equal(['node-1', 'node-2', 'node-3']);
      expect(m.etcd!.keyCount).to.equal(Object.keys(before).length);
      expect(m.artifacts.map((a) => a.path).sort()).to.deep.equal([
        'etcd/snapshot.db',
        'nodes/node-1/kubernetes.tar',
        'nodes/node-2/kubernetes.tar',
        'nodes/node-3/kubernetes.tar',
      ]);
      expect(await sha256(join(backupDir(m.id), 'etcd/snapshot.db'))).to.equal(await sha256(file));

      const verify = await kbur('verify', '--deep', m.id);
      expect(verify.code, verify.stdout + verify.stderr).to.equal(0);

      await etcd.delete().prefix('/registry/configmaps/');
      await etcd.put('/registry/configmaps/demo/after-the-snapshot').value('x');
      const restore = await kbur('restore', m.id, '--yes');
      expect(restore.code, restore.stdout + restore.stderr).to.equal(0);
      etcd = await clientAfterRestore(sandbox, etcd);
      expect(await dump()).to.deep.equal(before);
    });

    it('refuses a truncated snapshot and a malformed --kubernetes-dir-archive, writing nothing', async function () {
      const file = join(root, 'truncated.db');
      await sandbox.etcdctl(['snapshot', 'save', file], { endpoints: [sandbox.nodes[0]!.clientUrl] });
      await truncate(file, (await stat(file)).size - 100);
      const sets = async (): Promise<number> => (await readdir(join(sandbox.repoDir, 'sandbox', 'backups'))).length;
      const n = await sets();
      const run = await kbur('import', file);
      expect(run.code).to.equal(5);
      expect(run.stderr).to.contain('truncated or not a snapshot');
      const bad = await kbur('import', file, '--kubernetes-dir-archive', 'node-1');
      expect(bad.code).to.equal(2);
      expect(bad.stderr).to.contain('expected NODE=TAR');
      expect(await sets()).to.equal(n);
    });
  });
});

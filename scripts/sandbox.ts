/**
 * The sandbox demo: a local 3-node kubeadm-like control plane (etcd over TLS on 127.0.0.11-13,
 * a kubelet stand-in, three kbur agents), then what an operator does: kbur backup, list, describe,
 * verify, a check with plain etcdctl and tar that the backup needs no kbur to be read; then a
 * disaster (a namespace's objects deleted, one member's data dir wiped), kbur restore, and the
 * objects proven back; then the machines lost (every node reset as kubeadm reset leaves it) and the
 * control plane rebuilt by one kbur restore; with MariaDB installed, also a database dump, a dropped table, restore-dump.
 *
 *   node dist/scripts/sandbox.js demo [--root DIR] [--keep]   run the demo, then stop everything
 *   node dist/scripts/sandbox.js up [--root DIR]              start the sandbox and wait for Ctrl-C
 */
import { execFile, spawn } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createSandbox, waitForEtcdHealthy, type Sandbox } from '../test/sandbox/cluster.js';
import { startMariaDb, type MariaDb } from '../test/sandbox/databases.js';
import { NODE_FLAGS } from '../shared/node-flags.js';

const run = promisify(execFile);
const KBUR = fileURLToPath(new URL('../coordinator/kbur.cjs', import.meta.url));

function say(text: string): void {
  process.stdout.write(`\n\x1b[1m== ${text}\x1b[0m\n`);
}

/** Runs the kbur CLI as an operator would, shows its output, returns its exit code and stdout. */
async function kbur(sandbox: Sandbox, args: string[]): Promise<{ code: number; stdout: string }> {
  process.stdout.write(`$ kbur ${args.join(' ')}\n`);
  const child = spawn(process.execPath, [...NODE_FLAGS, KBUR, '--config', sandbox.coordinatorConfig, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let stdout = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
    process.stdout.write(d);
  });
  const code = await new Promise<number>((res) => child.on('close', (c) => res(c ?? 1)));
  return { code, stdout };
}

function expectCode(what: string, got: number, want: number): void {
  if (got !== want) throw new Error(`${what} exited ${got}, expected ${want}`);
}

/**
 * When MariaDB is installed: a server of the sandbox's own with a small application database, a
 * dump profile for it on node-1, and the backup running it. Without MariaDB the demo goes on without.
 */
async function withMariaDb(sandbox: Sandbox): Promise<MariaDb | undefined> {
  let db: MariaDb;
  try {
    db = await startMariaDb({ root: sandbox.root });
  } catch (err) {
    process.stdout.write(`MariaDB not available (${(err as Error).message.split('\n')[0]}): the demo runs without a dump profile\n`);
    return undefined;
  }
  await db.query(
    "CREATE DATABASE appdb; CREATE TABLE appdb.orders (id INT PRIMARY KEY, item VARCHAR(40)); INSERT INTO appdb.orders VALUES (1, 'etcd'), (2, 'pki'), (3, 'manifests');",
  );
  const node = sandbox.nodes[0]!;
  await appendFile(
    node.agentConfig,
    `dumps:\n  appdb: {type: mariadb, defaultsFile: ${db.defaultsFile}, socket: ${db.socket}, databases: [appdb]}\n`,
  );
  await appendFile(sandbox.coordinatorConfig, `dumps:\n  - {node: ${node.name}, profile: appdb}\n`);
  process.stdout.write(`MariaDB: ${db.socket}, database appdb (3 orders), dump profile appdb on ${node.name}\n`);
  return db;
}

async function demo(sandbox: Sandbox, db: MariaDb | undefined): Promise<void> {
  // Every node keeps a copy of the snapshot: the restore below starts from those, not from an upload.
  await appendFile(sandbox.coordinatorConfig, 'backup:\n  copySnapshotToNodes: true\n');
  say('kbur backup   (kbur.yaml: backup.copySnapshotToNodes: true)');
  const backup = await kbur(sandbox, ['backup']);
  expectCode('kbur backup', backup.code, 0);
  const id = /^backup (\S+): Completed/m.exec(backup.stdout)?.[1];
  if (!id) throw new Error('kbur backup did not report a Completed backup');

  say('kbur list');
  expectCode('kbur list', (await kbur(sandbox, ['list'])).code, 0);
  say(`kbur describe ${id}`);
  expectCode('kbur describe', (await kbur(sandbox, ['describe', id])).code, 0);
  say(`kbur verify ${id}`);
  expectCode('kbur verify', (await kbur(sandbox, ['verify', id])).code, 0);
  say('kbur status   (what monitoring sees: agents, members, backups, copies, certificates)');
  expectCode('kbur status', (await kbur(sandbox, ['status'])).code, 0);
  say('kbur check   (a monitoring plugin: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)');
  expectCode('kbur check', (await kbur(sandbox, ['check'])).code, 0);

  say('no lock-in: plain etcdctl and tar read the backup');
  const dir = join(sandbox.repoDir, 'sandbox', 'backups', id);
  const status = await run('etcdctl', ['snapshot', 'status', join(dir, 'etcd/snapshot.db'), '-w', 'table'], {
    env: { PATH: process.env.PATH, ETCDCTL_API: '3' },
  });
  process.stdout.write(`$ etcdctl snapshot status etcd/snapshot.db\n${status.stdout}`);
  const restoreDir = join(sandbox.root, 'plain-restore');
  await run(
    'etcdctl',
    [
      'snapshot',
      'restore',
      join(dir, 'etcd/snapshot.db'),
      '--data-dir',
      restoreDir,
      '--name',
      'node-1',
      '--initial-cluster',
      'node-1=https://127.0.0.11:2380',
      '--initial-advertise-peer-urls',
      'https://127.0.0.11:2380',
    ],
    { env: { PATH: process.env.PATH, ETCDCTL_API: '3' } },
  );
  process.stdout.write(`$ etcdctl snapshot restore etcd/snapshot.db --data-dir ${restoreDir} ...: ok\n`);
  const tar = await run('tar', ['-tvf', join(dir, 'nodes/node-1/kubernetes.tar')]);
  const lines = tar.stdout.split('\n').filter((l) => /pki\/(ca|etcd\/server)\.(crt|key)$|kubeadm-config/.test(l));
  process.stdout.write(`$ tar -tvf nodes/node-1/kubernetes.tar | grep ...\n${lines.join('\n')}\n`);

  await disasterAndRestore(sandbox, id);
  await machinesLost(sandbox, id);
  if (db) await dumpDisasterAndRestore(sandbox, db, id);
  say('demo done: backup Completed and verified, readable without kbur; after a disaster, restored and proven back');
}

/** The disaster: a namespace's objects deleted and one member's data dir wiped. Then kbur restore. */
async function disasterAndRestore(sandbox: Sandbox, id: string): Promise<void> {
  const keys = async (): Promise<string[]> =>
    (await sandbox.etcdctl(['get', '--prefix', '/registry/', '--keys-only'])).split('\n').filter(Boolean).sort();
  const before = await keys();
  say(`disaster: every object of namespace demo deleted, and ${sandbox.nodes[2]!.name}'s etcd data dir wiped`);
  await sandbox.etcdctl(['del', '--prefix', '/registry/configmaps/demo/']);
  await sandbox.wipeEtcdData(sandbox.nodes[2]!.name);
  const after = new Set(await keys());
  process.stdout.write(
    `${before.length - after.size} of ${before.length} keys under /registry/ are gone, e.g. ${before.find((k) => !after.has(k))}\n`,
  );

  say(`kbur restore ${id} --yes`);
  expectCode('kbur restore', (await kbur(sandbox, ['restore', id, '--yes'])).code, 0);
  await waitForEtcdHealthy(sandbox);
  const restored = await keys();
  const missing = before.filter((k) => !restored.includes(k));
  if (missing.length || restored.length !== before.length)
    throw new Error(`after the restore ${missing.length} keys are still missing: ${missing.slice(0, 3).join(', ')}`);
  process.stdout.write(`all ${before.length} keys under /registry/ are back; the old data dirs are kept beside the new ones:\n`);
  for (const n of sandbox.nodes)
    process.stdout.write(`  ${n.name}: ${(await readdir(n.dir)).filter((d) => d.startsWith('etcd-data')).join(', ')}\n`);
}

/** The machines lost: every node reset as `kubeadm reset` leaves it. One kbur restore rebuilds them all. */
async function machinesLost(sandbox: Sandbox, id: string): Promise<void> {
  const keys = async (): Promise<string[]> =>
    (await sandbox.etcdctl(['get', '--prefix', '/registry/', '--keys-only'])).split('\n').filter(Boolean).sort();
  const before = await keys();
  say('disaster: the machines are lost: every node reset the way kubeadm reset leaves it (no pki, kubeconfigs, manifests, etcd data)');
  for (const n of sandbox.nodes) await sandbox.resetNode(n.name);
  for (const n of sandbox.nodes)
    process.stdout.write(
      `  ${n.name}: ${n.kubernetesDir} holds ${(await readdir(n.kubernetesDir)).join(', ') || 'nothing'}; manifests/ and pki/ are empty\n`,
    );

  say(`kbur restore ${id} --yes   (the agents, still running, find no etcd member: each node is rebuilt from its archive)`);
  expectCode('kbur restore', (await kbur(sandbox, ['restore', id, '--yes'])).code, 0);
  await waitForEtcdHealthy(sandbox);
  const restored = await keys();
  if (restored.join() !== before.join()) throw new Error(`after the rebuild ${restored.length} keys, expected ${before.length}`);
  process.stdout.write(
    `the control plane is back on every node: all ${before.length} keys, pki, kubeconfigs and static pods as archived\n`,
  );
}

/** The application's disaster: a table dropped. Then kbur restore-dump, with its safety dump. */
async function dumpDisasterAndRestore(sandbox: Sandbox, db: MariaDb, id: string): Promise<void> {
  const rows = (): Promise<string> => db.query('SELECT id, item FROM appdb.orders ORDER BY id');
  const before = await rows();
  say('disaster: table appdb.orders dropped');
  await db.query('DROP TABLE appdb.orders');
  say(`kbur restore-dump ${id} --node node-1 --profile appdb --yes`);
  expectCode('kbur restore-dump', (await kbur(sandbox, ['restore-dump', id, '--node', 'node-1', '--profile', 'appdb', '--yes'])).code, 0);
  const after = await rows();
  if (after !== before)
    throw new Error(`after restore-dump appdb.orders holds ${JSON.stringify(after)}, expected ${JSON.stringify(before)}`);
  process.stdout.write(`appdb.orders is back:\n${after}`);
}

async function main(): Promise<number> {
  const [command = 'demo', ...rest] = process.argv.slice(2);
  const rootFlag = rest.indexOf('--root');
  const keep = rest.includes('--keep');
  const root = rootFlag >= 0 ? resolve(rest[rootFlag + 1]!) : await mkdtemp(join(tmpdir(), 'kbur-sandbox-'));
  await mkdir(root, { recursive: true });
  say(`starting the sandbox in ${root}: 3 etcd members over TLS, kubelet stand-in, 3 kbur agents`);
  const sandbox = await createSandbox({ root });
  let db: MariaDb | undefined;
  try {
    db = await withMariaDb(sandbox);
    await sandbox.startAgents();
    process.stdout.write(
      `etcd: ${sandbox.nodes.map((n) => n.clientUrl).join(' ')}\nagents: ${sandbox.nodes.map((n) => n.agentAddress).join(' ')}\nkbur config: ${sandbox.coordinatorConfig}\n`,
    );
    if (command === 'up') {
      say(`sandbox up; try: node ${KBUR} --config ${sandbox.coordinatorConfig} backup   (Ctrl-C stops it)`);
      await new Promise<void>((res) => process.once('SIGINT', () => res()));
    } else {
      await demo(sandbox, db);
    }
    return 0;
  } catch (err) {
    process.stderr.write(`\nsandbox: ${(err as Error).message}\n  logs: ${join(root, 'logs')}\n`);
    return 1;
  } finally {
    await sandbox.stop();
    await db?.stop();
    if (command !== 'up' && !keep && rootFlag < 0) await rm(root, { recursive: true, force: true });
  }
}

process.exitCode = await main();

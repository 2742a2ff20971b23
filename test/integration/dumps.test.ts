import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { expect } from 'chai';
import type { Manifest } from '../../shared/manifest.js';
import { createSandbox, type Sandbox } from '../sandbox/cluster.js';
import { startMariaDb, startPostgres, type MariaDb, type Postgres } from '../sandbox/databases.js';
import { runKbur, spawnKbur } from '../helpers/kbur.js';

const exec = promisify(execFile);

describe('application dumps with real MariaDB and PostgreSQL', function () {
  this.timeout(240_000);
  let root: string;
  let sandbox: Sandbox;
  let db: MariaDb;
  let pg: Postgres;
  let original: Buffer;

  /** A kbur.yaml like the sandbox's, running these dumps. */
  async function configWith(name: string, dumps: [string, string][]): Promise<string> {
    const file = join(root, `${name}.yaml`);
    const base = await readFile(sandbox.coordinatorConfig, 'utf8');
    await writeFile(file, `${base}dumps:\n${dumps.map(([node, profile]) => `  - {node: ${node}, profile: ${profile}}`).join('\n')}\n`);
    return file;
  }

  async function backup(config: string): Promise<{ code: number; manifest: Manifest; stderr: string }> {
    const run = await runKbur(['--config', config, 'backup', '--json']);
    expect(run.stdout, run.stderr).to.not.equal('');
    return { code: run.code, manifest: JSON.parse(run.stdout) as Manifest, stderr: run.stderr };
  }

  async function files(dir: string): Promise<string[]> {
    return (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
  }

  /** The safety dump the agent on node-1 wrote for a restore-dump run. */
  async function safetyDumpOf(stdout: string): Promise<string> {
    const rid = /restore-dump (\S+): done/.exec(stdout)?.[1];
    expect(rid, stdout).to.be.a('string');
    const dir = join(sandbox.nodes[0]!.stateDir, 'restores', rid!, 'safety');
    const found = await readdir(dir);
    expect(found).to.have.length(1);
    return join(dir, found[0]!);
  }

  before(async function () {
    root = await mkdtemp(join(tmpdir(), 'kbur-dumps-test-'));
    sandbox = await createSandbox({ root });
    [db, pg] = await Promise.all([startMariaDb({ root }), startPostgres({ root })]);
    await db.query(
      'CREATE DATABASE appdb; CREATE TABLE appdb.t1 (id INT PRIMARY KEY, v VARCHAR(40)); CREATE TABLE appdb.t2 (id INT PRIMARY KEY);',
    );
    await db.query("INSERT INTO appdb.t1 VALUES (1, 'one'), (2, 'two'), (3, 'three'); INSERT INTO appdb.t2 VALUES (10), (20);");
    await pg.query(`CREATE DATABASE registry OWNER ${pg.user};`);
    await pg.query(
      `SET ROLE ${pg.user}; CREATE TABLE images (id int PRIMARY KEY, tag text); INSERT INTO images VALUES (1, 'v1'), (2, 'v2'); CREATE TABLE pulls (n int);`,
      'registry',
    );
    const badCnf = join(root, 'bad.cnf');
    await writeFile(badCnf, `[client]\nuser=${db.user}\npassword=not-the-password\nsocket=${db.socket}\n`, { mode: 0o600 });
    original = randomBytes(3 << 20);
    await mkdir(join(root, 'app'));
    await writeFile(join(root, 'app', 'data.bin'), original);
    await writeFile(join(root, 'app', 'secret.key'), 'k', { mode: 0o600 });

    const node1 = sandbox.nodes[0]!;
    const profiles = [
      `  appdb: {type: mariadb, defaultsFile: ${db.defaultsFile}, socket: ${db.socket}, databases: [appdb]}`,
      `  badpw: {type: mariadb, defaultsFile: ${badCnf}, socket: ${db.socket}, databases: [appdb]}`,
      `  registry: {type: postgres, host: ${pg.socketDir}, port: ${pg.port}, user: ${pg.user}, passFile: ${pg.passFile}, databases: [registry], tool: ${pg.binDir}/pg_dump}`,
      `  blob: {type: command, dump: [/bin/cat, ${join(root, 'app', 'data.bin')}], restore: [/bin/sh, -c, 'cat > ${join(root, 'restored.bin')}']}`,
      `  app: {type: files, paths: [${join(root, 'app')}]}`,
      `  alldb: {type: mariadb, defaultsFile: ${db.defaultsFile}, socket: ${db.socket}}`,
      `  slow: {type: command, dump: [/bin/sleep, '30'], restore: [/bin/true], timeout: 1s}`,
    ];
    await writeFile(node1.agentConfig, `${await readFile(node1.agentConfig, 'utf8')}dumps:\n${profiles.join('\n')}\n`);
    await sandbox.startAgents();
  });

  after(async function () {
    await sandbox?.stop();
    await Promise.all([db?.stop(), pg?.stop()]);
    await rm(root, { recursive: true, force: true });
  });

  it('round-trips MariaDB: a row changed and a table dropped come back, and the safety dump holds the changed state', async function () {
    const checksum = (): Promise<string> => db.query('CHECKSUM TABLE appdb.t1, appdb.t2');
    const before = await checksum();
    const { code, manifest } = await backup(await configWith('mariadb', [['node-1', 'appdb']]));
    expect(code).to.equal(0);
    const dump = manifest.artifacts.find((a) => a.kind === 'dump')!;
    expect(dump.path).to.equal('dumps/node-1/appdb/appdb.sql.gz');
    expect(dump.compression).to.equal('gzip');
    expect(dump.dump!.toolVersion).to.match(/mariadb-dump|mysqldump/i);
    expect(dump.dump!.command).to.not.contain(db.password);

    await db.query("UPDATE appdb.t1 SET v = 'changed' WHERE id = 1; DROP TABLE appdb.t2;");
    expect(await checksum()).to.not.equal(before);
    const run = await runKbur([
      '--config',
      sandbox.coordinatorConfig,
      'restore-dump',
      manifest.id,
      '--node',
      'node-1',
      '--profile',
      'appdb',
      '--yes',
    ]);
    expect(run.code, run.stdout + run.stderr).to.equal(0);
    expect(await checksum()).to.equal(before);
    const safety = gunzipSync(await readFile(await safetyDumpOf(run.stdout))).toString();
    expect(safety).to.contain("'changed'");
    expect(safety).to.not.contain('CREATE TABLE `t2`');
  });

  it('round-trips PostgreSQL with pg_dump -Fc and pg_restore --clean --create, and verify reads the archive', async function () {
    const rows = (): Promise<string> => pg.query('SELECT id, tag FROM images ORDER BY id', 'registry');
    const before = await rows();
    const { code, manifest } = await backup(await configWith('postgres', [['node-1', 'registry']]));
    expect(code).to.equal(0);
    const dump = manifest.artifacts.find((a) => a.kind === 'dump')!;
    expect([dump.path, dump.compression]).to.deep.equal(['dumps/node-1/registry/registry.pgdump', 'none']);
    expect(dump.dump!.rawBytes, 'every byte pg_dump wrote reached the repository').to.equal(dump.size);
    const verify = await runKbur(['--config', sandbox.coordinatorConfig, 'verify', manifest.id]);
    expect(verify.code, verify.stdout).to.equal(0);

    await pg.query(`SET ROLE ${pg.user}; UPDATE images SET tag = 'changed' WHERE id = 1; DROP TABLE pulls;`, 'registry');
    const run = await runKbur([
      '--config',
      sandbox.coordinatorConfig,
      'restore-dump',
      manifest.id,
      '--node',
      'node-1',
      '--profile',
      'registry',
      '--yes',
    ]);
    expect(run.code, run.stdout + run.stderr).to.equal(0);
    expect(await rows()).to.equal(before);
    expect((await pg.query("SELECT count(*) FROM pg_tables WHERE tablename = 'pulls'", 'registry')).trim()).to.equal('1');
    const { stdout: safety } = await exec(`${pg.binDir}/pg_restore`, ['-f', '-', await safetyDumpOf(run.stdout)]);
    expect(safety).to.match(/1\tchanged/);
    expect(safety).to.not.contain('CREATE TABLE public.pulls');
  });

  it("streams a command's output (the path mongodump takes) and feeds it back to its restore command", async function () {
    const { code, manifest } = await backup(await configWith('command', [['node-1', 'blob']]));
    expect(code).to.equal(0);
    const dump = manifest.artifacts.find((a) => a.kind === 'dump')!;
    expect(dump.dump!.rawBytes).to.equal(original.length);
    const run = await runKbur([
      '--config',
      sandbox.coordinatorConfig,
      'restore-dump',
      manifest.id,
      '--node',
      'node-1',
      '--profile',
      'blob',
      '--yes',
    ]);
    expect(run.code, run.stderr).to.equal(0);
    const restored = await readFile(join(root, 'restored.bin'));
    expect(createHash('sha256').update(restored).digest('hex')).to.equal(createHash('sha256').update(original).digest('hex'));
  });

  it('archives a file set with its modes and puts it back', async function () {
    const { code, manifest } = await backup(await configWith('files', [['node-1', 'app']]));
    expect(code).to.equal(0);
    await writeFile(join(root, 'app', 'data.bin'), 'overwritten');
    const run = await runKbur([
      '--config',
      sandbox.coordinatorConfig,
      'restore-dump',
      manifest.id,
      '--node',
      'node-1',
      '--profile',
      'app',
      '--yes',
    ]);
    expect(run.code, run.stdout + run.stderr).to.equal(0);
    expect((await readFile(join(root, 'app', 'data.bin'))).equals(original)).to.equal(true);
    expect((await stat(join(root, 'app', 'secret.key'))).mode & 0o777).to.equal(0o600);
  });

  it('kbur restore --dumps brings back etcd and then every dump of the backup', async function () {
    const checksum = (): Promise<string> => db.query('CHECKSUM TABLE appdb.t1');
    const before = await checksum();
    const { code, manifest } = await backup(await configWith('all', [['node-1', 'appdb']]));
    expect(code).to.equal(0);
    await db.query("UPDATE appdb.t1 SET v = 'after the backup' WHERE id = 2;");
    const run = await runKbur(['--config', sandbox.coordinatorConfig, 'restore', manifest.id, '--yes', '--dumps']);
    expect(run.code, run.stdout + run.stderr).to.equal(0);
    expect(run.stdout).to.match(/node-1\/appdb\/appdb: safety dump of what was there/);
    expect(await checksum()).to.equal(before);
  });

  it('marks a dump Failed, with the reason, for a wrong password, an undefined profile and a timeout', async function () {
    const { code, manifest } = await backup(
      await configWith('bad', [
        ['node-1', 'badpw'],
        ['node-2', 'appdb'],
        ['node-1', 'slow'],
      ]),
    );
    expect(code).to.equal(3);
    expect(manifest.phase).to.equal('PartiallyFailed');
    const why = Object.fromEntries(manifest.failures.map((f) => [f.part, f.message]));
    expect(why['dump/node-1/badpw']).to.match(/exited \d+: .*Access denied for user/);
    expect(why['dump/node-2/appdb']).to.contain('node node-2 defines no dump profile "appdb"');
    expect(why['dump/node-1/slow']).to.contain('timed out after 1 s and was killed');
    expect(manifest.artifacts.filter((a) => a.kind === 'dump')).to.deep.equal([]);
    expect((await files(join(sandbox.repoDir, 'sandbox', 'backups', manifest.id))).filter((f) => f.includes('/dumps/'))).to.deep.equal([]);

    const restore = await runKbur([
      '--config',
      sandbox.coordinatorConfig,
      'restore-dump',
      manifest.id,
      '--node',
      'node-2',
      '--profile',
      'appdb',
      '--yes',
    ]);
    expect(restore.code).to.equal(6);
    expect(restore.stderr).to.match(/has no dump node-2\/appdb/);
  });

  it('refuses to dump a database whose name a tool would read as an option, and names it', async function () {
    await db.query('CREATE DATABASE `-e-evil`;');
    try {
      const { code, manifest } = await backup(await configWith('alldb', [['node-1', 'alldb']]));
      expect(code).to.equal(3);
      const why = manifest.failures.find((f) => f.part === 'dump/node-1/alldb')?.message;
      expect(why).to.contain('"-e-evil"');
      expect(why).to.contain('does not put in a file name or a command line');
      expect(manifest.artifacts.filter((a) => a.kind === 'dump')).to.deep.equal([]);
    } finally {
      await db.query('DROP DATABASE `-e-evil`;');
    }
  });

  it('gives a Failed dump in a PartiallyFailed backup when the database server is killed during its dump', async function () {
    await db.query(
      "CREATE TABLE appdb.big (id INT AUTO_INCREMENT PRIMARY KEY, pad CHAR(255)); INSERT INTO appdb.big (pad) VALUES (REPEAT('x', 255));",
    );
    for (let i = 0; i < 17; i++) await db.query('INSERT INTO appdb.big (pad) SELECT pad FROM appdb.big;');
    const { child, done } = spawnKbur(['--config', await configWith('kill', [['node-1', 'appdb']]), 'backup', '--json']);
    // Once the dump's bytes reach the repository, freeze the coordinator: the agent, then
    // mariadb-dump, wait on it, and the server dies under a dump in progress.
    const deadline = Date.now() + 60_000;
    let started = false;
    while (!started && Date.now() < deadline) {
      const found = await files(join(sandbox.repoDir, 'sandbox', 'backups')).catch(() => []);
      started = found.some((f) => f.endsWith('appdb.sql.gz.part'));
      if (!started) await new Promise((r) => setTimeout(r, 5));
    }
    expect(started, 'the dump started').to.equal(true);
    child.kill('SIGSTOP');
    db.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 500));
    child.kill('SIGCONT');
    const run = await done;
    expect(run.code, run.stderr).to.equal(3);
    const m = JSON.parse(run.stdout) as Manifest;
    expect(m.phase).to.equal('PartiallyFailed');
    expect(m.failures.map((f) => f.part)).to.deep.equal(['dump/node-1/appdb']);
    expect(m.failures[0]!.message).to.match(/mariadb-dump .*(exited|killed)/);
    expect(m.artifacts.map((a) => a.kind).sort()).to.deep.equal(['etcd-snapshot', 'kubernetes-dir', 'kubernetes-dir', 'kubernetes-dir']);
    expect((await files(join(sandbox.repoDir, 'sandbox', 'backups', m.id))).filter((f) => f.includes('/dumps/'))).to.deep.equal([]);
  });
});

import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startMariaDb, startPostgres, type MariaDb, type Postgres } from '../sandbox/databases.js';

interface Run {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** Runs a real client as an operator's script would, with nothing of this shell's HOME, PG* or MYSQL_*. */
function client(file: string, args: string[], env: Record<string, string> = {}, stdin?: Buffer): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      file,
      args,
      { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: '/nonexistent', ...env }, encoding: 'buffer', maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr: stderr.toString() });
      },
    );
    child.stdin?.end(stdin);
  });
}

async function succeeds(file: string, args: string[], env: Record<string, string> = {}, stdin?: Buffer): Promise<Buffer> {
  const r = await client(file, args, env, stdin);
  expect(r.code, `${file} ${args.join(' ')}: ${r.stderr}`).to.equal(0);
  return r.stdout;
}

/** The process's state letter from /proc, or undefined once it is gone (a zombie, 'Z', is not running either). */
function state(pid: number): string | undefined {
  try {
    return /\) (\S)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

const isRunning = (pid: number): boolean => ![undefined, 'Z'].includes(state(pid));

async function waitUntilGone(pids: number[], timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pids.some(isRunning)) {
    if (Date.now() > deadline) throw new Error(`still running: ${pids.filter(isRunning).join(', ')}`);
    await sleep(50);
  }
}

/** What pgrep finds whose command line names `text` and is not a zombie. */
async function pgrep(text: string): Promise<string> {
  const r = await client('pgrep', ['-a', '-f', '-r', 'R,S,D,T,t', text]);
  return r.stdout.toString().trim();
}

async function children(pid: number): Promise<number[]> {
  const r = await client('pgrep', ['-P', String(pid)]);
  return r.stdout.toString().trim().split('\n').filter(Boolean).map(Number);
}

async function expectRejection(promise: Promise<unknown>, message: string): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).to.be.instanceOf(Error);
  expect((err as Error).message).to.contain(message);
}

const mode = async (path: string): Promise<number> => (await stat(path)).mode & 0o777;

// Quotes, backslashes, a colon, a hash and a space: every escape the option file, SQL and .pgpass need.
const PASSWORD = `s3cr#t "pass": it's \\ ok`;

describe('database servers for the dump tests', function () {
  this.timeout(120_000);
  let root: string;
  let maria: MariaDb | undefined;
  let pg: Postgres | undefined;

  before(async function () {
    root = await mkdtemp(join(tmpdir(), 'kbur-db-test-'));
    const [m, p] = await Promise.allSettled([startMariaDb({ root, password: PASSWORD }), startPostgres({ root, password: PASSWORD })]);
    if (m.status === 'fulfilled') maria = m.value;
    if (p.status === 'fulfilled') pg = p.value;
    if (m.status === 'rejected') throw m.reason;
    if (p.status === 'rejected') throw p.reason;
  });

  after(async function () {
    await Promise.all([maria?.stop(), pg?.stop()]);
    await rm(root, { recursive: true, force: true });
  });

  describe('clean stop', function () {
    it('shuts both servers down cleanly, next to running ones on the same default port', async function () {
      const own = join(root, 'clean');
      await mkdir(own);
      const [m, p] = await Promise.all([startMariaDb({ root: own }), startPostgres({ root: own })]);
      try {
        expect(p.port).to.equal(pg!.port);
        const pids = [m.pid()!, p.pid()!, ...(await children(p.pid()!))];
        expect(pids.every(isRunning)).to.equal(true);
        await Promise.all([m.stop(), p.stop()]);
        expect(pids.filter(isRunning)).to.deep.equal([]);
        expect(await pgrep(own)).to.equal('');
        expect(readFileSync(join(own, 'mariadb', 'error.log'), 'utf8')).to.contain('Shutdown complete');
        expect(readFileSync(join(own, 'postgres', 'postgres.log'), 'utf8')).to.contain('database system is shut down');
        expect(await pg!.query('SELECT 1')).to.equal('1\n');
      } finally {
        await Promise.all([m.stop(), p.stop()]);
      }
    });
  });

  it('refuses to start a second server in a root that has one', async function () {
    const running = [maria?.pid(), pg?.pid()];
    await expectRejection(startMariaDb({ root }), `${join(root, 'mariadb')} already exists`);
    await expectRejection(startPostgres({ root }), `${join(root, 'postgres')} already exists`);
    expect([maria?.pid(), pg?.pid()]).to.deep.equal(running);
  });

  describe('MariaDB', function () {
    function db(): MariaDb {
      if (!maria) throw new Error('MariaDB did not start');
      return maria;
    }

    it('runs from the temp root on its own socket, without TCP, with private option files', async function () {
      expect(db().socket.startsWith(root)).to.equal(true);
      expect(db().dataDir.startsWith(root)).to.equal(true);
      const out = await succeeds('mariadb', [
        `--defaults-extra-file=${db().defaultsFile}`,
        '--batch',
        '--skip-column-names',
        '-e',
        'select current_user(), @@socket, @@datadir, @@skip_networking',
      ]);
      expect(out.toString().trim().split('\t')).to.deep.equal(['kbur@localhost', db().socket, `${db().dataDir}/`, '1']);
      expect(await mode(db().defaultsFile)).to.equal(0o600);
      expect(await mode(db().rootDefaultsFile)).to.equal(0o600);
      expect(readFileSync(db().defaultsFile, 'utf8')).to.match(/^\[client\]\nuser=.*\npassword=.*\nsocket=.*\n$/);
    });

    it('refuses the dump user with a wrong password', async function () {
      const wrong = join(root, 'wrong.cnf');
      await writeFile(wrong, `[client]\nuser=kbur\npassword=not-the-password\nsocket=${db().socket}\n`, { mode: 0o600 });
      const r = await client('mariadb', [`--defaults-extra-file=${wrong}`, '-e', 'select 1']);
      expect(r.code).to.not.equal(0);
      expect(r.stderr).to.contain("Access denied for user 'kbur'@'localhost'");
    });

    it('shows the dump user the rows root wrote', async function () {
      await db().query(
        'CREATE DATABASE appdb; CREATE TABLE appdb.orders (id INT PRIMARY KEY, item VARCHAR(40)) ENGINE=InnoDB;' +
          "INSERT INTO appdb.orders VALUES (1, 'disk'), (2, 'cpu'), (3, 'fan');",
      );
      expect(await db().query('SELECT item FROM orders ORDER BY id', 'appdb')).to.equal('disk\ncpu\nfan\n');
      const out = await succeeds('mariadb', [
        `--defaults-extra-file=${db().defaultsFile}`,
        '-N',
        '-e',
        'select count(*) from appdb.orders',
      ]);
      expect(out.toString().trim()).to.equal('3');
    });

    it('dumps appdb with routines, triggers and events, and the dump user can restore it', async function () {
      await db().query(
        [
          'CREATE PROCEDURE count_orders() SELECT COUNT(*) FROM orders;',
          'CREATE TRIGGER orders_upper BEFORE INSERT ON orders FOR EACH ROW SET NEW.item = UPPER(NEW.item);',
          'CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM orders WHERE id < 0;',
        ].join('\n'),
        'appdb',
      );
      const dumpArgs = ['--single-transaction', '--routines', '--triggers', '--events', '--databases', 'appdb'];
      const dump = await succeeds('mariadb-dump', [`--defaults-extra-file=${db().defaultsFile}`, ...dumpArgs]);
      const text = dump.toString();
      expect(text).to.contain('CREATE DATABASE /*!32312 IF NOT EXISTS*/ `appdb`');
      expect(text).to.contain("INSERT INTO `orders` VALUES\n(1,'disk'),\n(2,'cpu'),\n(3,'fan');");
      expect(text).to.match(/PROCEDURE `count_orders`/);
      expect(text).to.match(/TRIGGER orders_upper BEFORE INSERT/);
      expect(text).to.match(/EVENT `nightly`/);

      await db().query('DROP DATABASE appdb');
      await succeeds('mariadb', [`--defaults-extra-file=${db().defaultsFile}`], {}, dump);
      expect(await db().query('SELECT COUNT(*) FROM orders; SHOW TRIGGERS; SHOW EVENTS;', 'appdb')).to.match(/^3\norders_upper\t/);
    });

    it('exits when killed with SIGKILL, and stop() leaves nothing running', async function () {
      const pid = db().pid();
      expect(pid).to.be.a('number');
      db().kill('SIGKILL');
      await waitUntilGone([pid!]);
      await db().stop();
      expect(db().pid()).to.equal(undefined);
      expect(await pgrep(db().dataDir)).to.equal('');
    });
  });

  describe('PostgreSQL', function () {
    function db(): Postgres {
      if (!pg) throw new Error('PostgreSQL did not start');
      return pg;
    }
    const psql = (args: string[], passFile: string): Promise<Run> =>
      client('psql', ['-X', '-A', '-t', '-w', '-h', db().socketDir, '-p', String(db().port), ...args], { PGPASSFILE: passFile });

    it('runs from the temp root on its own socket, without TCP, with a private passfile', async function () {
      expect(db().socketDir.startsWith(root)).to.equal(true);
      const r = await psql(['-U', 'kbur', '-d', 'postgres', '-F', ' ', '-c', 'select current_user, version()'], db().passFile);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout.toString()).to.match(/^kbur PostgreSQL \d+/);
      expect(await db().query('SHOW data_directory; SHOW listen_addresses; SHOW port;')).to.equal(`${db().dataDir}\n\n${db().port}\n`);
      expect(await mode(db().passFile)).to.equal(0o600);
      // The postgres OS user must reach its data dir: mkdtemp's 0700 root got o+x, nothing more.
      expect(await mode(root)).to.equal(0o701);
      expect(readFileSync(db().passFile, 'utf8')).to.match(new RegExp(`^${db().socketDir}:${db().port}:\\*:kbur:.+\\n$`));
    });

    it('refuses the dump user with a wrong password, or none', async function () {
      const wrong = join(root, 'wrong.pgpass');
      await writeFile(wrong, `${db().socketDir}:${db().port}:*:kbur:not-the-password\n`, { mode: 0o600 });
      const r = await psql(['-U', 'kbur', '-d', 'postgres', '-c', 'select 1'], wrong);
      expect(r.code).to.not.equal(0);
      expect(r.stderr).to.contain('password authentication failed for user "kbur"');
      const none = await psql(['-U', 'kbur', '-d', 'postgres', '-c', 'select 1'], '/nonexistent');
      expect(none.stderr).to.contain('no password supplied');
    });

    it("shows the dump user the rows of an application's database", async function () {
      await db().query('CREATE ROLE registry_app; CREATE DATABASE registry OWNER registry_app;');
      await db().query(
        "SET ROLE registry_app; CREATE TABLE images (id int PRIMARY KEY, tag text); INSERT INTO images VALUES (1, 'v1'), (2, 'v2');",
        'registry',
      );
      const r = await psql(['-U', 'kbur', '-d', 'registry', '-c', 'select tag from images order by id'], db().passFile);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout.toString()).to.equal('v1\nv2\n');
    });

    it('dumps registry with pg_dump -Fc, and the dump user can restore it into a database of its own', async function () {
      const env = { PGPASSFILE: db().passFile };
      const conn = ['-h', db().socketDir, '-p', String(db().port), '-U', 'kbur', '-w'];
      const dump = await succeeds('pg_dump', ['-Fc', ...conn, 'registry'], env);
      expect(dump.subarray(0, 5).toString()).to.equal('PGDMP');

      const archive = join(root, 'registry.dump');
      await writeFile(archive, dump);
      expect((await succeeds('pg_restore', ['--list', archive])).toString()).to.match(/TABLE public images registry_app/);
      await succeeds('psql', ['-X', ...conn, '-d', 'postgres', '-c', 'CREATE DATABASE registry_restored'], env);
      await succeeds('pg_restore', [...conn, '--no-owner', '--exit-on-error', '-d', 'registry_restored', archive], env);
      expect(
        await db().query("SELECT tag, pg_get_userbyid(relowner) FROM images, pg_class WHERE relname = 'images'", 'registry_restored'),
      ).to.equal('v1|kbur\nv2|kbur\n');
    });

    it('exits with all its backends when the postmaster is killed with SIGKILL, and stop() leaves nothing running', async function () {
      const pid = db().pid()!;
      const backends = await children(pid);
      expect(backends.length).to.be.greaterThan(0);
      db().kill('SIGKILL');
      await waitUntilGone([pid, ...backends]);
      await db().stop();
      expect(db().pid()).to.equal(undefined);
      expect(await pgrep(db().dataDir)).to.equal('');
    });
  });
});

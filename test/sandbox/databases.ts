// Real MariaDB and PostgreSQL servers from Debian's packages, for the application-dump tests. Each
// server is initialised in a fresh data dir under the caller's root, listens only on a Unix socket
// there, and belongs to the test that started it. Nothing here reads the system's option files or
// ~/.my.cnf / ~/.pgpass, touches /run/mysqld, /var/lib/{mysql,postgresql} or port 5432, or deletes
// the caller's root.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, closeSync, constants, openSync, readFileSync, readdirSync, readlinkSync, realpathSync } from 'node:fs';
import { chmod, chown, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { basename, delimiter, dirname, isAbsolute, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface MariaDbOptions {
  /** An absolute directory owned by the caller; the server lives in `<root>/mariadb/`, which must not exist yet. */
  root: string;
  /** The dump user; default `kbur`. */
  user?: string;
  /** The dump user's password; default: random. */
  password?: string;
}

export interface MariaDb {
  /** `<root>/mariadb/mysqld.sock`; the server has no TCP listener (--skip-networking). */
  socket: string;
  dataDir: string;
  /** The mariadbd process while it runs. */
  pid(): number | undefined;
  /** A client option file (0600): `[client]` user, password and socket of the dump user. */
  defaultsFile: string;
  /** The same for MariaDB's root (which also keeps unix_socket auth for the OS root). */
  rootDefaultsFile: string;
  user: string;
  password: string;
  /** Runs SQL (from stdin) as MariaDB's root with the `mariadb` CLI; tab-separated rows, no header. */
  query(sql: string, db?: string): Promise<string>;
  /** Sends a signal to mariadbd (default SIGTERM, a clean shutdown). */
  kill(signal?: NodeJS.Signals): void;
  /** Shuts the server down (SIGTERM, SIGKILL after a minute) and waits until its process is gone. */
  stop(): Promise<void>;
}

export interface PostgresOptions {
  /** An absolute directory owned by the caller; the cluster lives in `<root>/postgres/`, which must not exist yet. */
  root: string;
  /** The dump user; default `kbur`. */
  user?: string;
  /** The dump user's password; default: random. */
  password?: string;
  /**
   * Names the socket `<socketDir>/.s.PGSQL.<port>`; default 55432. The server opens no TCP port and
   * the socket dir is its own, so every port is free there; 55432 stays clear of Debian's 5432.
   */
  port?: number;
}

export interface Postgres {
  /** `<root>/postgres/run`: the server's socket and lock file; there is no TCP listener. */
  socketDir: string;
  port: number;
  dataDir: string;
  /** The bin dir of the server's major version, e.g. /usr/lib/postgresql/15/bin (Debian's /usr/bin/pg_* are wrappers). */
  binDir: string;
  /** A PGPASSFILE (0600) with the dump user's line: `<socketDir>:<port>:*:<user>:<password>`. */
  passFile: string;
  /** The same for the superuser `postgres`. */
  superuserPassFile: string;
  user: string;
  password: string;
  /** The postmaster while it runs. */
  pid(): number | undefined;
  /** Runs SQL (from stdin) as the superuser with `psql -X -A -t -q`, stopping at the first error. */
  query(sql: string, db?: string): Promise<string>;
  /**
   * Sends a signal to the postmaster (default SIGTERM, PostgreSQL's "smart" shutdown). After a SIGKILL
   * its backends notice the postmaster is gone and exit on their own, failing their clients.
   */
  kill(signal?: NodeJS.Signals): void;
  /** Fast shutdown (SIGINT, SIGKILL after a minute), then waits until the postmaster and every backend are gone. */
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 60_000;
const STRAGGLER_TIMEOUT_MS = 10_000;
const POLL_MS = 100;
const DEFAULT_PG_PORT = 55432;
/** sun_path holds 108 bytes on Linux, the terminating NUL included. */
const MAX_SOCKET_PATH = 107;
const PG_SUPERUSER = 'postgres';

// ---------------------------------------------------------------------------------------------
// Programs and processes

/** The first executable among `names` on PATH or in the sbin dirs (mariadbd is in /usr/sbin, off a user's PATH). */
function findProgram(names: string[]): string {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(isAbsolute), '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
  for (const name of names) {
    for (const dir of dirs) {
      try {
        accessSync(join(dir, name), constants.X_OK);
        return join(dir, name);
      } catch {
        // not here
      }
    }
  }
  throw new Error(`none of ${names.join(', ')} is installed: run scripts/setup.sh (as root)`);
}

/** The bin dir of the newest PostgreSQL server installed the Debian way, /usr/lib/postgresql/<major>/bin. */
function postgresBinDir(): string {
  const base = '/usr/lib/postgresql';
  let majors: string[] = [];
  try {
    majors = readdirSync(base).filter((v) => /^\d+$/.test(v));
  } catch {
    // not installed
  }
  const installed = majors.filter((v) => {
    try {
      accessSync(join(base, v, 'bin', 'postgres'), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
  const newest = installed.sort((a, b) => Number(b) - Number(a))[0];
  if (newest === undefined) throw new Error(`no PostgreSQL server under ${base}/*/bin: run scripts/setup.sh (Debian package postgresql)`);
  return join(base, newest, 'bin');
}

/**
 * The environment of every server and client started here: the caller's PG*, MYSQL_* and HOME would
 * otherwise pick the host, user or password (~/.my.cnf is read even with --defaults-extra-file).
 */
function cleanEnv(home: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: home, LC_ALL: 'C', ...extra };
}

interface RunOptions {
  /** Says what ran in an error message; arguments are not shown (SQL may hold passwords). */
  what: string;
  env: NodeJS.ProcessEnv;
  stdin?: string;
  cwd?: string;
  uid?: number;
  gid?: number;
}

function run(file: string, args: string[], opts: RunOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { env: opts.env, cwd: opts.cwd, uid: opts.uid, gid: opts.gid, maxBuffer: 256 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const output = (stderr.trim() || stdout.trim()).slice(-4000);
        reject(new Error(`${opts.what} failed (${basename(file)}): ${output || err.message}`, { cause: err }));
      },
    );
    // A program that fails before reading its stdin closes the pipe: its exit status tells why.
    child.stdin?.on('error', () => {});
    child.stdin?.end(opts.stdin ?? '');
  });
}

function tail(file: string, lines = 30): string {
  try {
    return `--- ${file}\n${readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')}`;
  } catch {
    return `--- ${file}: no log`;
  }
}

/**
 * Live processes of a server: named `comm` and working in `dir`. A server chdirs to its data dir and
 * its children inherit it, so this finds a killed postmaster's backends after they were reparented.
 */
function processesIn(dir: string, comm: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/cwd`) === dir && readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === comm) {
        pids.push(Number(entry));
      }
    } catch {
      // exited meanwhile, or a zombie (no cwd): not running
    }
  }
  return pids;
}

const liveServers = new Set<ChildProcess>();
let exitHookInstalled = false;

/** A server outlives a test run that dies on an exception unless it is killed on the way out. */
function track(child: ChildProcess): void {
  liveServers.add(child);
  child.once('exit', () => liveServers.delete(child));
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const server of liveServers) server.kill('SIGKILL');
  });
}

function killIfThere(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // exited meanwhile
  }
}

/** A database server process started here, and everything it forked (found through its working directory). */
class ServerProcess {
  private readonly exited: Promise<void>;

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
    /** Resolved: it is compared with /proc/<pid>/cwd. */
    private readonly dataDir: string,
    private readonly comm: string,
    private readonly stopSignal: NodeJS.Signals,
  ) {
    this.exited = new Promise((resolve) => {
      if (!this.running) resolve();
      else child.once('exit', () => resolve());
    });
  }

  /** Resolves once the program runs; rejects if it could not be started (e.g. the uid cannot reach it). */
  static async spawn(
    name: string,
    file: string,
    args: string[],
    opts: { dataDir: string; log: string; env: NodeJS.ProcessEnv; uid?: number; gid?: number; stopSignal: NodeJS.Signals },
  ): Promise<ServerProcess> {
    const fd = openSync(opts.log, 'a', 0o600);
    let child: ChildProcess;
    try {
      child = spawn(file, args, { stdio: ['ignore', fd, fd], env: opts.env, cwd: opts.dataDir, uid: opts.uid, gid: opts.gid });
    } finally {
      closeSync(fd);
    }
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err) => reject(new Error(`could not start ${name} (${file}): ${err.message}`, { cause: err })));
    });
    track(child);
    // What the kernel calls the program (its first 15 bytes): postgres' backends keep the postmaster's.
    const comm = basename(file).slice(0, 15);
    return new ServerProcess(name, child, realpathSync(opts.dataDir), comm, opts.stopSignal);
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  pid(): number | undefined {
    return this.running ? this.child.pid : undefined;
  }

  exitStatus(): string {
    return this.child.signalCode ? `signal ${this.child.signalCode}` : `code ${this.child.exitCode}`;
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.running) this.child.kill(signal);
  }

  async stop(): Promise<void> {
    if (this.running) {
      this.child.kill(this.stopSignal);
      const killer = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await this.exited;
      clearTimeout(killer);
    }
    await this.waitForChildren();
  }

  /** After a SIGKILL the server's own children may still be exiting; they get a while, then a SIGKILL. */
  private async waitForChildren(): Promise<void> {
    const deadline = Date.now() + STRAGGLER_TIMEOUT_MS;
    for (;;) {
      const left = processesIn(this.dataDir, this.comm);
      if (left.length === 0) return;
      if (Date.now() > deadline) {
        for (const pid of left) killIfThere(pid);
        if (Date.now() > deadline + STRAGGLER_TIMEOUT_MS) throw new Error(`${this.name} processes ${left.join(', ')} do not exit`);
      }
      await sleep(POLL_MS);
    }
  }

  /** Polls `ready` until it resolves true; fails early, with the log's tail, if the server exits. */
  async waitUntil(ready: () => Promise<boolean>, log: string): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!(await ready())) {
      if (!this.running) throw new Error(`${this.name} exited (${this.exitStatus()}) before it was ready\n${tail(log)}`);
      if (Date.now() > deadline) throw new Error(`${this.name} is not ready after ${READY_TIMEOUT_MS} ms\n${tail(log)}`);
      await sleep(POLL_MS);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Inputs and the files that carry secrets

function randomPassword(): string {
  return randomBytes(18).toString('base64url');
}

function checkRoot(root: string): void {
  if (!isAbsolute(root)) throw new Error(`database root must be an absolute path, got ${root}`);
}

function checkPassword(password: string): void {
  if (password === '' || /[\0\r\n]/.test(password)) throw new Error('database password must be non-empty and on one line');
}

function checkSocketPath(path: string): void {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH) {
    throw new Error(`socket path ${path} is over ${MAX_SOCKET_PATH} bytes, the limit of a Unix socket: use a shorter root`);
  }
}

/** A new directory of the server's own: a second server in the same root would share its files. */
async function makeOwnDir(path: string, mode: number): Promise<void> {
  try {
    await mkdir(path, { mode });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new Error(`${path} already exists: start each server in a fresh root`);
    throw err;
  }
  await chmod(path, mode);
}

/** Writes a new file that holds a secret; mode 0600 from the start, never wider. */
function writeSecret(path: string, text: string): Promise<void> {
  return writeFile(path, text, { mode: 0o600, flag: 'wx' });
}

/** A double-quoted value of a MySQL/MariaDB option file, which unescapes \\ and \" there. */
function optionValue(value: string): string {
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function clientOptionFile(user: string, password: string, socket: string): string {
  return `[client]\nuser=${optionValue(user)}\npassword=${optionValue(password)}\nsocket=${optionValue(socket)}\n`;
}

/** A MariaDB string literal (backslashes are escapes unless NO_BACKSLASH_ESCAPES, which is off). */
function mariaString(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** A PostgreSQL string literal (standard_conforming_strings is on). */
function pgString(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/** One field of a .pgpass line: `:` and `\` are escaped with a backslash. */
function pgpassField(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
}

// ---------------------------------------------------------------------------------------------
// MariaDB

const isRoot = (): boolean => process.geteuid?.() === 0;

/**
 * Initialises a data dir with mariadb-install-db, starts mariadbd on a socket in `<root>/mariadb/`,
 * waits until it answers, and creates the dump user (ALL PRIVILEGES ON *.*: mariadb-dump's
 * --single-transaction --routines --triggers --events, and a restore's DROP/CREATE DATABASE and
 * DEFINER clauses). As root, mariadbd runs as root (`--user=root`): its files stay the caller's.
 */
export async function startMariaDb(opts: MariaDbOptions): Promise<MariaDb> {
  checkRoot(opts.root);
  const user = opts.user ?? 'kbur';
  const password = opts.password ?? randomPassword();
  if (!/^[A-Za-z0-9_]{1,32}$/.test(user) || user === 'root') {
    throw new Error(`MariaDB dump user must match [A-Za-z0-9_]{1,32} and not be root, got ${user}`);
  }
  checkPassword(password);

  const dir = join(opts.root, 'mariadb');
  const dataDir = join(dir, 'data');
  const socket = join(dir, 'mysqld.sock');
  const errorLog = join(dir, 'error.log');
  const defaultsFile = join(dir, `${user}.cnf`);
  const rootDefaultsFile = join(dir, 'root.cnf');
  checkSocketPath(socket);
  const mariadbd = findProgram(['mariadbd', 'mysqld']);
  const installDb = findProgram(['mariadb-install-db', 'mysql_install_db']);
  const client = findProgram(['mariadb', 'mysql']);
  const admin = findProgram(['mariadb-admin', 'mysqladmin']);

  await makeOwnDir(dir, 0o700);
  await makeOwnDir(join(dir, 'tmp'), 0o700);
  const env = cleanEnv(dir);
  // mariadbd refuses to run as root unless told to; as another user it runs as that user.
  const asUser = isRoot() ? ['--user=root'] : [];
  // The unix_socket account mariadb-install-db makes for the OS user who will run the setup below.
  const osUser = userInfo().username;
  await run(installDb, ['--no-defaults', `--datadir=${dataDir}`, ...asUser, `--auth-root-socket-user=${osUser}`, '--skip-test-db'], {
    what: 'mariadb-install-db',
    env,
    cwd: dir,
  });

  const server = await ServerProcess.spawn(
    'mariadbd',
    mariadbd,
    [
      '--no-defaults',
      `--datadir=${dataDir}`,
      `--socket=${socket}`,
      '--skip-networking',
      `--pid-file=${join(dir, 'mariadbd.pid')}`,
      `--log-error=${errorLog}`,
      `--tmpdir=${join(dir, 'tmp')}`,
      // What Debian's /etc/mysql/mariadb.conf.d/50-server.cnf sets, which --no-defaults skips (else latin1).
      '--character-set-server=utf8mb4',
      '--collation-server=utf8mb4_general_ci',
      ...asUser,
    ],
    { dataDir, log: errorLog, env, stopSignal: 'SIGTERM' },
  );
  try {
    // `ping` exits 0 once the server accepts connections, even when it refuses the login.
    const pingArgs = ['--no-defaults', `--socket=${socket}`, '--connect-timeout=2', 'ping'];
    await server.waitUntil(() => run(admin, pingArgs, { what: 'mariadb-admin ping', env }).then(ok, no), errorLog);

    const rootPassword = randomPassword();
    const setup = [
      // Keeps unix_socket for the OS root and adds a password for the option file.
      `ALTER USER root@localhost IDENTIFIED VIA mysql_native_password USING PASSWORD(${mariaString(rootPassword)}) OR unix_socket;`,
      `CREATE USER ${mariaString(user)}@localhost IDENTIFIED BY ${mariaString(password)};`,
      `GRANT ALL PRIVILEGES ON *.* TO ${mariaString(user)}@localhost;`,
    ].join('\n');
    await run(client, ['--no-defaults', `--socket=${socket}`, `--user=${osUser}`, '--batch'], {
      what: 'creating the MariaDB users',
      env,
      stdin: setup,
    });
    await writeSecret(rootDefaultsFile, clientOptionFile('root', rootPassword, socket));
    await writeSecret(defaultsFile, clientOptionFile(user, password, socket));
  } catch (err) {
    await server.stop();
    throw err;
  }

  return {
    socket,
    dataDir,
    defaultsFile,
    rootDefaultsFile,
    user,
    password,
    pid: () => server.pid(),
    query: (sql, db) =>
      run(client, [`--defaults-extra-file=${rootDefaultsFile}`, '--batch', '--skip-column-names', ...(db ? [`--database=${db}`] : [])], {
        what: `MariaDB query${db ? ` in ${db}` : ''}`,
        env,
        stdin: sql,
      }),
    kill: (signal) => server.kill(signal),
    stop: () => server.stop(),
  };
}

const ok = (): boolean => true;
const no = (): boolean => false;

// ---------------------------------------------------------------------------------------------
// PostgreSQL

interface Account {
  name: string;
  uid: number;
  gid: number;
}

async function osAccount(name: string): Promise<Account> {
  const line = await run('getent', ['passwd', name], { what: `looking up the ${name} OS user`, env: cleanEnv('/') });
  const [, , uid, gid] = line.trim().split(':');
  if (uid === undefined || gid === undefined) throw new Error(`getent passwd ${name} answered ${line.trim()}`);
  return { name, uid: Number(uid), gid: Number(gid) };
}

/** Whether `account` may search a directory (its supplementary groups are dropped when it is started). */
function canSearch(st: { uid: number; gid: number; mode: number }, account: Account): boolean {
  if (st.uid === account.uid) return (st.mode & 0o100) !== 0;
  if (st.gid === account.gid) return (st.mode & 0o010) !== 0;
  return (st.mode & 0o001) !== 0;
}

/**
 * The postgres OS user must reach `<root>/postgres`. mkdtemp makes 0700 dirs, so the caller's root
 * gets o+x (search, not list: 0700 becomes 0701); a parent it cannot search is an error, not ours to change.
 */
async function letSearch(root: string, account: Account): Promise<void> {
  const real = realpathSync(root);
  for (let dir = dirname(real); ; dir = dirname(dir)) {
    if (!canSearch(await stat(dir), account)) {
      throw new Error(`${dir} is not searchable by the ${account.name} user, who must reach ${root}: use a root under /tmp`);
    }
    if (dir === dirname(dir)) break;
  }
  const st = await stat(real);
  if (!canSearch(st, account)) await chmod(real, (st.mode & 0o7777) | 0o001);
}

/**
 * Initialises a cluster in `<root>/postgres/data` and starts it on a socket in `<root>/postgres/run`.
 * As root, initdb and postgres run as the `postgres` OS user (postgres refuses root): the data and
 * socket dirs are chowned to it and the root gets o+x. Every local login needs a SCRAM password: the
 * superuser's is in `superuserPassFile`. The dump user gets LOGIN, CREATEDB (a restore creates the
 * database it then owns) and pg_read_all_data (it dumps databases owned by the applications).
 */
export async function startPostgres(opts: PostgresOptions): Promise<Postgres> {
  checkRoot(opts.root);
  const user = opts.user ?? 'kbur';
  const password = opts.password ?? randomPassword();
  const port = opts.port ?? DEFAULT_PG_PORT;
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(user) || user === PG_SUPERUSER) {
    throw new Error(`PostgreSQL dump user must match [a-z_][a-z0-9_]{0,62} and not be ${PG_SUPERUSER}, got ${user}`);
  }
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`PostgreSQL port must be 1..65535, got ${port}`);
  checkPassword(password);

  const binDir = postgresBinDir();
  const dir = join(opts.root, 'postgres');
  const dataDir = join(dir, 'data');
  const socketDir = join(dir, 'run');
  const log = join(dir, 'postgres.log');
  const passFile = join(dir, `${user}.pgpass`);
  const superuserPassFile = join(dir, `${PG_SUPERUSER}.pgpass`);
  checkSocketPath(join(socketDir, `.s.PGSQL.${port}.lock`));

  const owner = isRoot() ? await osAccount('postgres') : undefined;
  if (owner) await letSearch(opts.root, owner);
  await makeOwnDir(dir, 0o711);
  await makeOwnDir(dataDir, 0o700);
  await makeOwnDir(socketDir, 0o755);
  if (owner) await Promise.all([chown(dataDir, owner.uid, owner.gid), chown(socketDir, owner.uid, owner.gid)]);
  const asOwner = { uid: owner?.uid, gid: owner?.gid };
  const env = cleanEnv(dataDir);

  // initdb reads the superuser's password from a file the postgres user can open (not a pipe of root's).
  const superuserPassword = randomPassword();
  const pwFile = join(dir, 'initdb.pw');
  await writeSecret(pwFile, `${superuserPassword}\n`);
  try {
    if (owner) await chown(pwFile, owner.uid, owner.gid);
    const initdbArgs = ['-D', dataDir, '-U', PG_SUPERUSER, `--pwfile=${pwFile}`, '-A', 'scram-sha-256', '-E', 'UTF8', '--no-locale'];
    await run(join(binDir, 'initdb'), initdbArgs, { what: 'initdb', env, cwd: dataDir, ...asOwner });
  } finally {
    await rm(pwFile, { force: true });
  }
  const passLine = (u: string, p: string): string => `${pgpassField(socketDir)}:${port}:*:${u}:${pgpassField(p)}\n`;
  await writeSecret(superuserPassFile, passLine(PG_SUPERUSER, superuserPassword));

  const server = await ServerProcess.spawn(
    'postgres',
    join(binDir, 'postgres'),
    ['-D', dataDir, '-k', socketDir, '-p', String(port), '-c', 'listen_addresses='],
    { dataDir, log, env, ...asOwner, stopSignal: 'SIGINT' },
  );
  const query = (sql: string, db = PG_SUPERUSER): Promise<string> =>
    run(
      join(binDir, 'psql'),
      ['-X', '-A', '-t', '-q', '-w', '-v', 'ON_ERROR_STOP=1', '-h', socketDir, '-p', String(port), '-U', PG_SUPERUSER, '-d', db, '-f', '-'],
      { what: `PostgreSQL query in ${db}`, env: cleanEnv(dir, { PGPASSFILE: superuserPassFile }), stdin: sql },
    );
  try {
    const isReady = join(binDir, 'pg_isready');
    const readyArgs = ['-q', '-h', socketDir, '-p', String(port), '-t', '2'];
    await server.waitUntil(() => run(isReady, readyArgs, { what: 'pg_isready', env }).then(ok, no), log);
    const role = `"${user}"`;
    await query(`CREATE ROLE ${role} LOGIN CREATEDB PASSWORD ${pgString(password)};\nGRANT pg_read_all_data TO ${role};\n`);
    await writeSecret(passFile, passLine(user, password));
  } catch (err) {
    await server.stop();
    throw err;
  }

  return {
    socketDir,
    port,
    dataDir,
    binDir,
    passFile,
    superuserPassFile,
    user,
    password,
    pid: () => server.pid(),
    query,
    kill: (signal) => server.kill(signal),
    stop: () => server.stop(),
  };
}

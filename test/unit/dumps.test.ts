import { expect } from 'chai';
import { mongodumpArgs, mongorestoreArgs, planDump } from '../../agent/dumps/commands.js';
import { dumpProfileSchema, type DumpProfile } from '../../agent/dumps/profiles.js';
import { dumpPath } from '../../coordinator/backup/dumps.js';
import { KburError } from '../../shared/errors.js';

const profile = (p: unknown): DumpProfile => dumpProfileSchema.parse(p);

describe('dump profiles', () => {
  it('reads durations and defaults the timeout to one hour', () => {
    expect(profile({ type: 'files', paths: ['/srv'] }).timeout).to.equal(3600);
    expect(profile({ type: 'files', paths: ['/srv'], timeout: '30m' }).timeout).to.equal(1800);
    expect(profile({ type: 'files', paths: ['/srv'], timeout: 90 }).timeout).to.equal(90);
    expect(() => profile({ type: 'files', paths: ['/srv'], timeout: 'soon' })).to.throw(/duration such as 90s/);
  });

  it('refuses an unknown type, a relative path and a command not given by absolute path', () => {
    expect(() => profile({ type: 'oracle' })).to.throw();
    expect(() => profile({ type: 'files', paths: ['srv'] })).to.throw(/absolute path/);
    expect(() => profile({ type: 'command', dump: ['pg_dump'], restore: ['/bin/true'] })).to.throw(/absolute path first/);
  });

  it('builds mongodump and mongorestore command lines with the secret in the config file only', () => {
    const p = profile({ type: 'mongodb', configFile: '/etc/kbur/mongo.yaml', db: 'app' }) as Extract<DumpProfile, { type: 'mongodb' }>;
    expect(mongodumpArgs('/usr/bin/mongodump', p)).to.deep.equal([
      '/usr/bin/mongodump',
      '--config=/etc/kbur/mongo.yaml',
      '--archive',
      '--db=app',
    ]);
    expect(mongorestoreArgs('/usr/bin/mongorestore', p)).to.deep.equal([
      '/usr/bin/mongorestore',
      '--config=/etc/kbur/mongo.yaml',
      '--archive',
      '--drop',
      '--nsInclude=app.*',
    ]);
  });

  it('dumps postgres per database with -Fc, the password through PGPASSFILE and never on the command line', async () => {
    const plan = await planDump(
      profile({
        type: 'postgres',
        host: '/run/postgresql',
        user: 'kbur',
        passFile: '/etc/kbur/pgpass',
        databases: ['registry', 'auth'],
        globals: true,
        tool: '/usr/bin/pg_dump',
      }),
    );
    expect(plan.env.PGPASSFILE).to.equal('/etc/kbur/pgpass');
    expect(plan.parts.map((p) => [p.name, p.extension, p.compression])).to.deep.equal([
      ['registry', 'pgdump', 'none'],
      ['auth', 'pgdump', 'none'],
      ['_globals', 'sql', 'gzip'],
    ]);
    expect(plan.parts[0]!.argv).to.deep.equal([
      '/usr/bin/pg_dump',
      '-Fc',
      '-h',
      '/run/postgresql',
      '-p',
      '5432',
      '-U',
      'kbur',
      '-w',
      '-d',
      'registry',
    ]);
    expect(plan.parts[2]!.argv!.slice(0, 2)).to.deep.equal(['/usr/bin/pg_dumpall', '--globals-only']);
  });

  it('dumps mariadb with the defaults file first and the consistent-dump flags', async () => {
    const plan = await planDump(
      profile({
        type: 'mariadb',
        defaultsFile: '/etc/kbur/appdb.cnf',
        socket: '/run/mysqld/mysqld.sock',
        databases: ['appdb'],
        tool: '/bin/echo',
      }),
    );
    expect(plan.parts[0]!.argv).to.deep.equal([
      '/bin/echo',
      '--defaults-extra-file=/etc/kbur/appdb.cnf',
      '--socket=/run/mysqld/mysqld.sock',
      '--single-transaction',
      '--routines',
      '--triggers',
      '--events',
      '--hex-blob',
      '--databases',
      '--',
      'appdb',
    ]);
  });

  it('refuses database names that a tool could read as an option or that could leave a folder', () => {
    const mariadb = { type: 'mariadb', defaultsFile: '/etc/kbur/appdb.cnf' };
    for (const db of ['-x', '--all-databases', 'a/b', '..', 'a b', 'a\u0000b', '']) {
      expect(() => profile({ ...mariadb, databases: [db] }), JSON.stringify(db)).to.throw(/database name/);
      expect(() => profile({ type: 'postgres', host: 'h', user: 'u', passFile: '/p', databases: [db] }), JSON.stringify(db)).to.throw(
        /database name/,
      );
    }
    expect(profile({ ...mariadb, databases: ['app_db-1', '$x'] }).type).to.equal('mariadb');
  });
});

describe('dump paths in the repository', () => {
  it('refuses a part name or an extension from an agent that is not a plain name', () => {
    const part = { name: 'appdb', extension: 'sql', compression: 'gzip' };
    expect(dumpPath('node-1', 'appdb', part)).to.equal('dumps/node-1/appdb/appdb.sql.gz');
    for (const name of ['../../x', '-x', 'a/b', '.', 'a\u0000b', '']) {
      expect(() => dumpPath('node-1', 'appdb', { ...part, name }), JSON.stringify(name)).to.throw(KburError, /part name/);
    }
    for (const extension of ['sql/../../x', '', 'a b']) {
      expect(() => dumpPath('node-1', 'appdb', { ...part, extension }), JSON.stringify(extension)).to.throw(KburError, /extension/);
    }
  });
});

import { join } from 'node:path';
import { KburError } from '../../shared/errors.js';
import { NAME_PATTERNS, NAME_RULES, checkName } from '../../shared/manifest.js';
import { childEnv, runTool } from '../../shared/child.js';
import { findExecutable } from '../../shared/find-executable.js';
import type { DumpProfile } from './profiles.js';

/** One output of a dump profile: a database, the file set, a command's output. */
export interface DumpPart {
  name: string;
  extension: string;
  compression: 'gzip' | 'none';
  /** The dump command (argv[0] is the tool); absent for `files`, which kbur archives itself. */
  argv?: string[];
  /** For `files`: the paths, relative to /. */
  paths?: string[];
}

export interface DumpPlan {
  tool: string;
  toolVersion: string;
  /** Environment of every command: PATH, and where credentials come from (files, never argv). */
  env: NodeJS.ProcessEnv;
  parts: DumpPart[];
}

/** Schemas of the server itself, never dumped nor dropped by kbur. */
const MARIADB_SYSTEM = new Set(['information_schema', 'performance_schema', 'mysql', 'sys']);

/** Client connection options of a MariaDB profile; the defaults file must come first. */
export function mariadbClientArgs(p: Extract<DumpProfile, { type: 'mariadb' }>): string[] {
  return [
    `--defaults-extra-file=${p.defaultsFile}`,
    ...(p.socket ? [`--socket=${p.socket}`] : []),
    ...(p.host ? [`--host=${p.host}`] : []),
    ...(p.port ? [`--port=${p.port}`] : []),
  ];
}

/** One database of a MariaDB profile: a consistent dump (one transaction) with routines, triggers and events. */
export function mariadbPart(tool: string, p: Extract<DumpProfile, { type: 'mariadb' }>, db: string): DumpPart {
  checkName('database', db);
  const argv = [
    tool,
    ...mariadbClientArgs(p),
    '--single-transaction',
    '--routines',
    '--triggers',
    '--events',
    '--hex-blob',
    '--databases',
    '--',
    db,
  ];
  return { name: db, extension: 'sql', compression: 'gzip', argv };
}

export function postgresClientArgs(p: Extract<DumpProfile, { type: 'postgres' }>): string[] {
  // -w: never prompt; the password comes from PGPASSFILE.
  return ['-h', p.host, '-p', String(p.port), '-U', p.user, '-w'];
}

/** What a profile runs: the tool, its version, and one command per part. Runs nothing that changes anything. */
export async function planDump(profile: DumpProfile): Promise<DumpPlan> {
  switch (profile.type) {
    case 'mariadb': {
      const tool = profile.tool ?? (await findTool(['mariadb-dump', 'mysqldump'], 'mariadb-client'));
      const databases = profile.databases ?? (await listMariadbDatabases(profile));
      return { tool, toolVersion: await toolVersion(tool), env: childEnv(), parts: databases.map((db) => mariadbPart(tool, profile, db)) };
    }
    case 'postgres': {
      const tool = profile.tool ?? (await findTool(['pg_dump'], 'postgresql-client'));
      const parts: DumpPart[] = profile.databases.map((db) => ({
        name: checkName('database', db),
        extension: 'pgdump',
        // pg_dump's custom format is compressed by pg_dump itself.
        compression: 'none',
        argv: [tool, '-Fc', ...postgresClientArgs(profile), '-d', db],
      }));
      if (profile.globals) {
        const dumpall = join(tool, '..', 'pg_dumpall');
        parts.push({
          name: '_globals',
          extension: 'sql',
          compression: 'gzip',
          argv: [dumpall, '--globals-only', ...postgresClientArgs(profile)],
        });
      }
      return { tool, toolVersion: await toolVersion(tool), env: childEnv({ PGPASSFILE: profile.passFile }), parts };
    }
    case 'mongodb': {
      const tool = profile.tool ?? (await findTool(['mongodump'], 'the MongoDB database tools'));
      return {
        tool,
        toolVersion: await toolVersion(tool),
        env: childEnv(),
        parts: [{ name: 'archive', extension: 'archive', compression: 'gzip', argv: mongodumpArgs(tool, profile) }],
      };
    }
    case 'files':
      return {
        tool: 'tar',
        toolVersion: 'node-tar',
        env: childEnv(),
        parts: [{ name: 'files', extension: 'tar', compression: 'gzip', paths: profile.paths.map((p) => p.replace(/^\/+/, '')) }],
      };
    case 'command':
      return {
        tool: profile.dump[0]!,
        toolVersion: '',
        env: childEnv(profile.env),
        parts: [{ name: 'output', extension: 'out', compression: 'gzip', argv: profile.dump }],
      };
  }
}

/** The URI and its password live in the --config file; nothing secret on the command line. */
export function mongodumpArgs(tool: string, p: Extract<DumpProfile, { type: 'mongodb' }>): string[] {
  return [tool, `--config=${p.configFile}`, '--archive', ...(p.db ? [`--db=${p.db}`] : [])];
}

export function mongorestoreArgs(tool: string, p: Extract<DumpProfile, { type: 'mongodb' }>): string[] {
  return [tool, `--config=${p.configFile}`, '--archive', '--drop', ...(p.db ? [`--nsInclude=${p.db}.*`] : [])];
}

async function listMariadbDatabases(p: Extract<DumpProfile, { type: 'mariadb' }>): Promise<string[]> {
  const client = await findTool(['mariadb', 'mysql'], 'mariadb-client');
  const { stdout } = await runTool(client, [...mariadbClientArgs(p), '-N', '-B', '-e', 'SHOW DATABASES'], {
    env: childEnv(),
    timeout: 30_000,
    failure: {
      code: 'FAILED_PRECONDITION',
      what: 'cannot list the databases',
      hint: `check the server and the credentials in ${p.defaultsFile}, or list databases in the profile`,
    },
  });
  const names = stdout.split('\n').filter((d) => d && !MARIADB_SYSTEM.has(d));
  const unsafe = names.filter((d) => !NAME_PATTERNS.database.test(d));
  if (unsafe.length) {
    throw new KburError(
      'FAILED_PRECONDITION',
      `the server has databases whose names kbur does not put in a file name or a command line: ${unsafe.map((d) => JSON.stringify(d)).join(', ')}`,
      { hint: `list the databases to dump under the profile's databases (names of ${NAME_RULES.database}), or rename those databases` },
    );
  }
  return names;
}

export async function findTool(names: string[], pkg: string): Promise<string> {
  const found = await findExecutable(names);
  if (found) return found;
  throw new KburError('FAILED_PRECONDITION', `${names.join(' or ')} is not installed on this node`, {
    hint: `install ${pkg}, or set the profile's tool to its path`,
  });
}

async function toolVersion(tool: string): Promise<string> {
  try {
    const { stdout } = await runTool(tool, ['--version'], { env: childEnv(), timeout: 10_000 });
    return stdout.trim().split('\n')[0] ?? '';
  } catch {
    return 'unknown';
  }
}

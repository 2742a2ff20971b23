import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract } from 'tar';
import type { RestoreDumpRequest } from '../../proto/gen/kbur/v1/agent.js';
import { checkArchive, listEntries } from '../../shared/archive-check.js';
import { stderrOf } from '../../shared/child.js';
import { KburError } from '../../shared/errors.js';
import { NAME_PATTERNS, checkName } from '../../shared/manifest.js';
import { AtomicFile } from '../../shared/streams.js';
import { receiveFile, uploadHeader } from '../upload.js';
import { restoreDir } from '../restore/record.js';
import { stepDone, type StepResult } from '../restore/step.js';
import type { AgentState } from '../state.js';
import {
  findTool,
  mariadbPart,
  mariadbClientArgs,
  mongorestoreArgs,
  planDump,
  postgresClientArgs,
  type DumpPart,
  type DumpPlan,
} from './commands.js';
import type { DumpProfile } from './profiles.js';
import { profileNamed, startPart, watchChild } from './run.js';

/**
 * Restores one part of a dump profile: the dump is received and checked, a safety dump of what is
 * there now goes to the state dir, then the tool's own procedure runs: drop, recreate, load.
 */
export async function restoreDump(s: AgentState, messages: AsyncIterable<RestoreDumpRequest>, signal: AbortSignal): Promise<StepResult> {
  const { header, rest } = await uploadHeader(messages, 'RestoreDump (restore id, profile, part, size, sha256)');
  const profile = profileNamed(s.config.dumps, header.profile, s.config.node);
  checkName('part', header.part);
  const plan = await planDump(profile);
  const part = plan.parts.find((p) => p.name === header.part) ?? partOutsidePlan(profile, plan, header.part);

  const path = await receiveFile(header, rest, {
    dir: restoreDir(s.config.stateDir, header.restoreId),
    name: `${header.profile}.${header.part}.${part.extension}${header.compression === 'gzip' ? '.gz' : ''}`,
    snapshot: false,
    signal,
  });
  const upload = { size: header.size, path };

  const done: string[] = [`received ${header.part} of ${header.profile} (${upload.size} bytes, sha256 checked)`];
  done.push(await safetyDump(s, header.restoreId, header.profile, profile, plan, part, signal));
  done.push(...(await load(profile, plan, part, upload.path, header.compression, signal)));
  return stepDone(done);
}

/** MariaDB without a database list dumps every database; a restore may name any of them. */
function partOutsidePlan(profile: DumpProfile, plan: DumpPlan, name: string): DumpPart {
  if (profile.type === 'mariadb' && !profile.databases && NAME_PATTERNS.database.test(name)) return mariadbPart(plan.tool, profile, name);
  throw new KburError('INVALID_ARGUMENT', `profile has no part "${name}" (it has: ${plan.parts.map((p) => p.name).join(', ')})`);
}

/** What is there now, saved before anything is dropped. A database that is not there has nothing to lose. */
async function safetyDump(
  s: AgentState,
  restoreId: string,
  name: string,
  profile: DumpProfile,
  plan: DumpPlan,
  part: DumpPart,
  signal: AbortSignal,
): Promise<string> {
  const dir = join(restoreDir(s.config.stateDir, restoreId), 'safety');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, `${name}.${part.name}.${part.extension}${part.compression === 'gzip' ? '.gz' : ''}`);
  const file = new AtomicFile(path);
  const dump = startPart(plan, part, profile.timeout, signal);
  try {
    await pipeline(dump.output, file.stream);
    await dump.done;
    await file.commit();
    return `safety dump of what was there: ${path}`;
  } catch (err) {
    await file.abort();
    if (/does not exist|Unknown database|doesn't exist/i.test(dump.stderrTail()))
      return `no safety dump: ${part.name} does not exist now, so there is nothing to lose`;
    throw new KburError(
      'FAILED_PRECONDITION',
      `the safety dump of ${part.name} failed, so nothing was dropped: ${(err as Error).message}`,
      {
        cause: err,
        hint: 'fix what stops the dump (the server, the credentials); kbur never drops what it could not save first',
      },
    );
  }
}

async function load(
  profile: DumpProfile,
  plan: DumpPlan,
  part: DumpPart,
  file: string,
  compression: string,
  signal: AbortSignal,
): Promise<string[]> {
  const input = (): NodeJS.ReadableStream =>
    compression === 'gzip' ? createReadStream(file).pipe(createGunzip()) : createReadStream(file);
  switch (profile.type) {
    case 'mariadb': {
      const admin = await findTool(['mariadb-admin', 'mysqladmin'], 'mariadb-client');
      const client = await findTool(['mariadb', 'mysql'], 'mariadb-client');
      const conn = mariadbClientArgs(profile);
      const dropped = await tool(plan, [admin, ...conn, '--force', '--', 'drop', part.name], undefined, profile.timeout, signal).then(
        () => true,
        (err: unknown) => {
          if (/doesn't exist|does not exist/i.test((err as Error).message)) return false;
          throw err;
        },
      );
      await tool(plan, [admin, ...conn, '--', 'create', part.name], undefined, profile.timeout, signal);
      await tool(plan, [client, ...conn, '--', part.name], input(), profile.timeout, signal);
      return [`${dropped ? 'dropped and ' : ''}created database ${part.name}, loaded the dump with ${client}`];
    }
    case 'postgres': {
      const restore = join(plan.tool, '..', part.name === '_globals' ? 'psql' : 'pg_restore');
      if (part.name === '_globals') {
        await tool(
          plan,
          [restore, ...postgresClientArgs(profile), '-d', 'postgres', '-v', 'ON_ERROR_STOP=0'],
          input(),
          profile.timeout,
          signal,
        );
        return ['loaded the roles and tablespaces with psql'];
      }
      // --clean --create: drop the database, create it anew, load it; connected to the maintenance db.
      await tool(
        plan,
        [restore, ...postgresClientArgs(profile), '--clean', '--if-exists', '--create', '--exit-on-error', '-d', 'postgres', '--', file],
        undefined,
        profile.timeout,
        signal,
      );
      return [`dropped, recreated and loaded database ${part.name} with pg_restore --clean --create`];
    }
    case 'mongodb': {
      const mongorestore = profile.tool
        ? join(profile.tool, '..', 'mongorestore')
        : await findTool(['mongorestore'], 'the MongoDB database tools');
      await tool(plan, mongorestoreArgs(mongorestore, profile), input(), profile.timeout, signal);
      return ['restored with mongorestore --archive --drop'];
    }
    case 'files': {
      await checkArchive(file);
      await onlyUnder(file, part.paths ?? []);
      // One extraction per top-level folder (node-tar will not extract with / itself as the target).
      for (const top of new Set((part.paths ?? []).map((p) => p.split('/')[0]!))) {
        await extract({
          file,
          cwd: `/${top}`,
          strip: 1,
          filter: (p) => p.split('/')[0] === top,
          strict: true,
          preserveOwner: true,
          preservePaths: false,
        });
      }
      return [`unpacked the file set over ${(part.paths ?? []).map((p) => `/${p}`).join(', ')}`];
    }
    case 'command':
      await tool(plan, profile.restore, input(), profile.timeout, signal);
      return [`ran ${profile.restore[0]} with the dump on its stdin`];
  }
}

/**
 * A file set's archive may only write under the profile's own paths (folders above them come with
 * it), and every link in it, symbolic or hard, must be under them and point under them: checkArchive
 * judges links against the archive's root, which for a file set is /.
 */
async function onlyUnder(file: string, paths: string[]): Promise<void> {
  const under = (p: string): boolean => paths.some((root) => p === root || p.startsWith(`${root}/`));
  const bad: string[] = [];
  await listEntries(file, (e) => {
    const p = normalize(e.path).replace(/\/$/, '');
    if (!under(p) && !paths.some((root) => root.startsWith(`${p}/`))) bad.push(`${e.path}: outside the profile's paths`);
    else if (e.type === 'SymbolicLink' || e.type === 'Link') {
      const link = e.linkpath ?? '';
      // A symlink resolves against its own folder; a hard link's target is a path in the archive.
      const target = normalize(e.type === 'SymbolicLink' && !isAbsolute(link) ? join(dirname(p), link) : link).replace(/^\/+/, '');
      if (!under(p) || !under(target)) bad.push(`${e.path} -> ${link}: the link leaves the profile's paths`);
    }
  });
  if (bad.length)
    throw new KburError(
      'DATA_LOSS',
      `the file set's archive has ${bad.length} entr${bad.length === 1 ? 'y' : 'ies'} outside the profile's paths (${paths.map((p) => `/${p}`).join(', ')}): ${bad.slice(0, 3).join('; ')}${bad.length > 3 ? '; ...' : ''}`,
      { hint: 'this archive was not written by kbur or was tampered with; nothing was extracted' },
    );
}

/** Runs a restore tool, stdin from the dump when given; exit code and stderr checked. */
async function tool(
  plan: DumpPlan,
  argv: string[],
  stdin: NodeJS.ReadableStream | undefined,
  timeoutSec: number,
  signal: AbortSignal,
): Promise<void> {
  const [cmd, ...args] = argv;
  const child = spawn(cmd!, args, { env: plan.env, stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  const watched = watchChild(child, cmd!.split('/').pop()!, { compression: 'none', timeoutSec, signal, requireOutput: false });
  watched.output.resume();
  const feeding = stdin ? pipeline(stdin, child.stdin!).catch((err: unknown) => err) : Promise.resolve(undefined);
  await watched.done;
  const fed = await feeding;
  if (fed) throw new KburError('INTERNAL', `feeding the dump to ${cmd} failed: ${stderrOf(fed)}`, { cause: fed });
}

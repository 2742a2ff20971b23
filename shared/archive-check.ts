import { isAbsolute, join, normalize, sep } from 'node:path';
import { list } from 'tar';
import { KburError } from './errors.js';

const ALLOWED = new Set(['File', 'OldFile', 'ContiguousFile', 'Directory', 'SymbolicLink', 'Link']);

/**
 * Reads a tar's entries and refuses the whole archive if any entry could write outside the folder
 * it is unpacked into, or is not a plain file, folder or link: absolute paths, `..`, links that
 * leave the target, device files, fifos. Nothing is extracted before this passed.
 */
export async function checkArchive(file: string): Promise<{ entries: number }> {
  const bad: string[] = [];
  let entries = 0;
  const symlinks = new Set<string>();
  const files = new Set<string>();
  await listEntries(file, (entry) => {
    entries++;
    const path = normalize(entry.path).replace(/\/$/, '');
    let why = entryProblem(entry.path, entry.type, entry.linkpath);
    // A hard link is made to a file already extracted: tar writes the file first.
    if (!why && entry.type === 'Link' && !files.has(normalize(entry.linkpath!)))
      why = `hard link to ${entry.linkpath}, which is not a file earlier in the archive`;
    if (why) bad.push(`${entry.path.slice(0, 300)}: ${why}`);
    else if (entry.type === 'SymbolicLink') symlinks.add(path);
    else if (entry.type !== 'Directory') files.add(path);
  });
  // Once extracted, a path is resolved through the links before it: judged when every link is known.
  if (symlinks.size && !bad.length) {
    await listEntries(file, (entry) => {
      const via = throughLink(entry, symlinks);
      if (via) bad.push(`${entry.path.slice(0, 300)}: goes through the link ${via}`);
    });
  }
  if (bad.length) {
    throw new KburError(
      'DATA_LOSS',
      `archive ${file} has ${bad.length} unsafe entr${bad.length === 1 ? 'y' : 'ies'}: ${bad.slice(0, 5).join('; ')}${bad.length > 5 ? '; ...' : ''}`,
      {
        hint: 'this archive was not written by kbur or was tampered with; nothing was extracted',
      },
    );
  }
  return { entries };
}

/**
 * Reads every entry header of a tar (gzip or not), strictly: a damaged, truncated or not-a-tar
 * file is DATA_LOSS naming the file, never extracted.
 */
export async function listEntries(
  file: string,
  onEntry: (entry: { path: string; type: string; linkpath?: string }) => void,
): Promise<void> {
  const warnings: string[] = [];
  try {
    // What tar only warns of (a header it drops, an entry it would skip) makes extraction differ from this reading.
    await list({ file, strict: true, onReadEntry: onEntry, onwarn: (code, message) => warnings.push(`${code}: ${String(message)}`) });
    if (warnings.length) throw new Error(warnings.slice(0, 3).join('; '));
  } catch (err) {
    throw new KburError('DATA_LOSS', `archive ${file} is damaged or not a tar archive: ${(err as Error).message}`, {
      cause: err,
      hint: 'this archive was not written by kbur, was cut short or was tampered with; nothing was extracted',
    });
  }
}

/** Linux's PATH_MAX and NAME_MAX: an entry beyond them cannot be extracted whole. */
const PATH_MAX = 4096;
const NAME_MAX = 255;

export function entryProblem(path: string, type: string, linkpath: string | undefined): string | undefined {
  if (Buffer.byteLength(path) > PATH_MAX || Buffer.byteLength(linkpath ?? '') > PATH_MAX) return `a path longer than ${PATH_MAX} bytes`;
  if (path.split('/').some((name) => Buffer.byteLength(name) > NAME_MAX)) return `a name longer than ${NAME_MAX} bytes`;
  if (path.includes('\0') || linkpath?.includes('\0')) return 'a NUL in a path';
  if (isAbsolute(path)) return 'absolute path';
  if (leaves(path)) return 'path leaves the target folder (..)';
  // tar refuses `..` anywhere in a path when it extracts: refused here, before anything is written.
  if (path.split('/').includes('..')) return 'a .. in its path';
  if (!ALLOWED.has(type)) return `${type} entries are not extracted (only files, folders and links)`;
  if (type === 'SymbolicLink' || type === 'Link') {
    if (!linkpath) return 'link without a target';
    if (isAbsolute(linkpath)) return `${type === 'Link' ? 'hard ' : ''}link to an absolute path ${linkpath}`;
    // A symlink resolves against its own folder; a hard link's target is a path in the archive.
    const target = type === 'SymbolicLink' ? join(path, '..', linkpath) : linkpath;
    if (leaves(target)) return `link to ${linkpath} leaves the target folder`;
  }
  return undefined;
}

/**
 * The archive's own symlink that an entry's path, a symlink's target or a hard link's target passes
 * through before its last name (where a lexical check of `..` no longer tells where it lands).
 */
function throughLink(entry: { path: string; type: string; linkpath?: string }, symlinks: Set<string>): string | undefined {
  const walk = (parts: string[]): string | undefined => {
    const stack: string[] = [];
    for (const [i, part] of parts.entries()) {
      if (part === '' || part === '.') continue;
      if (part === '..') stack.pop();
      else stack.push(part);
      const prefix = stack.join('/');
      if (i < parts.length - 1 && part !== '..' && symlinks.has(prefix)) return prefix;
    }
    return undefined;
  };
  const own = walk(entry.path.replace(/\/$/, '').split('/'));
  if (own) return own;
  if (entry.type === 'SymbolicLink' && entry.linkpath) return walk([...entry.path.split('/').slice(0, -1), ...entry.linkpath.split('/')]);
  if (entry.type === 'Link' && entry.linkpath) return walk(entry.linkpath.split('/'));
  return undefined;
}

function leaves(rel: string): boolean {
  const n = normalize(rel);
  return n === '..' || n.startsWith(`..${sep}`);
}

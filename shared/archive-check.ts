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
  await list({
    file,
    strict: true,
    onReadEntry: (entry) => {
      entries++;
      const why = entryProblem(entry.path, entry.type, entry.linkpath);
      if (why) bad.push(`${entry.path}: ${why}`);
    },
  });
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

export function entryProblem(path: string, type: string, linkpath: string | undefined): string | undefined {
  if (isAbsolute(path)) return 'absolute path';
  if (leaves(path)) return 'path leaves the target folder (..)';
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

function leaves(rel: string): boolean {
  const n = normalize(rel);
  return n === '..' || n.startsWith(`..${sep}`);
}

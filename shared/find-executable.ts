import { constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { pathExists } from './path-exists.js';

/** The first of `names` that is an executable on PATH, or undefined. */
export async function findExecutable(names: string[]): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    for (const name of names) {
      const path = join(dir, name);
      if (await pathExists(path, constants.X_OK)) return path;
    }
  }
  return undefined;
}

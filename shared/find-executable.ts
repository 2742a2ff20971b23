import { constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { pathExists } from './path-exists.js';

/** The first of `names` that is an executable on PATH, or undefined. */
export async function findExecutable(names: string[]): Promise<string | undefined> {
  // Every candidate is asked at once (PATH can be long, and each ask is a trip to the thread pool); the first in PATH order wins.
  const candidates = (process.env.PATH ?? '').split(delimiter).flatMap((dir) => names.map((name) => join(dir, name)));
  const found = await Promise.all(candidates.map((path) => pathExists(path, constants.X_OK)));
  return candidates[found.indexOf(true)];
}

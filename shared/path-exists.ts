import { access } from 'node:fs/promises';

/** Whether something is at `path` (with `mode`, e.g. constants.X_OK, when given). */
export function pathExists(path: string, mode?: number): Promise<boolean> {
  return access(path, mode).then(
    () => true,
    () => false,
  );
}

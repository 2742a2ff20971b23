import { readFileSync } from 'node:fs';

/** kbur's version, from package.json (read once; both binaries ship with it). */
export const KBUR_VERSION: string = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

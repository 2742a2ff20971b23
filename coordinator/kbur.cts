#!/usr/bin/env -S node --max-semi-space-size=2
/**
 * `kbur` as package.json ships it: runs the bundled CLI (kbur-bundle.cjs, made by
 * scripts/bundle.ts) from the V8 code cache that the build wrote beside it, so that a command does
 * not parse and compile 2.6 MB of JavaScript before it starts: ~55 ms of every start on the
 * benchmark's machine, a fifth of a backup's time before etcd's first byte.
 *
 * module.enableCompileCache would write its cache at run time, into the install dir; this one is made by the build.
 * V8 takes the cache only for the same source, V8 version and flags (the shebang's: the build
 * writes it with the same NODE_FLAGS); any other cache is rejected and the bundle is compiled as
 * if there were none. Nothing is written at run time: the cache is made once, by the build, which
 * runs this file with KBUR_WRITE_COMPILE_CACHE=1 (written at exit, to a part file, then renamed).
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire, wrap } from 'node:module';
import { join } from 'node:path';
import { Script } from 'node:vm';

const bundle = join(__dirname, 'kbur-bundle.cjs');
const cacheFile = `${bundle}.cache`;

let cachedData: Buffer | undefined;
try {
  cachedData = readFileSync(cacheFile);
} catch {
  // No cache (a build that could not write it): compiled without one.
}
const script = new Script(wrap(readFileSync(bundle, 'utf8')), { filename: bundle, cachedData });
if (process.env.KBUR_WRITE_COMPILE_CACHE === '1') {
  process.once('exit', () => {
    writeFileSync(`${cacheFile}.part`, script.createCachedData());
    renameSync(`${cacheFile}.part`, cacheFile);
  });
}
const mod = { exports: {} };
(script.runInThisContext() as (...args: unknown[]) => void).call(mod.exports, mod.exports, createRequire(bundle), mod, bundle, __dirname);

/**
 * Runs the bundled CLI (kbur-bundle.cjs, scripts/bundle.ts) from the V8 code cache the build wrote
 * beside it, so that a command does not parse and compile 2.6 MB of JavaScript before it starts;
 * the npm-run kbur (tests, demo, benchmark) starts here, the single executables carry their own.
 * Figure: ~55 ms of every start (with it, a backup reaches etcd's first byte in 0.21 s).
 * Guarded by test/unit/library-assumptions.test.ts (V8 takes the cache under the launcher's flags).
 *
 * Not module.enableCompileCache: that writes its cache at run time, into a directory beside the
 * installed code; this one is made once, by the build (KBUR_WRITE_COMPILE_CACHE=1, at exit, to a
 * part file, then renamed). V8 takes a cache only for the same source, V8 version and flags; any
 * other is rejected and the bundle compiles as if there were none.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire, wrap } from 'node:module';
import { dirname } from 'node:path';
import { Script } from 'node:vm';

/** The bundle as V8 compiled it, with the cache beside it when there is one (`cachedDataRejected` says whether V8 took it). */
export function compileBundle(bundle: string): Script {
  let cachedData: Buffer | undefined;
  try {
    cachedData = readFileSync(`${bundle}.cache`);
  } catch {
    // No cache (a build that could not write it): compiled without one.
  }
  return new Script(wrap(readFileSync(bundle, 'utf8')), { filename: bundle, cachedData });
}

/** Runs the bundle as a CommonJS module; under KBUR_WRITE_COMPILE_CACHE=1 writes its cache at exit. */
export function runBundle(bundle: string): void {
  const script = compileBundle(bundle);
  if (process.env.KBUR_WRITE_COMPILE_CACHE === '1') {
    process.once('exit', () => {
      writeFileSync(`${bundle}.cache.part`, script.createCachedData());
      renameSync(`${bundle}.cache.part`, `${bundle}.cache`);
    });
  }
  const mod = { exports: {} };
  const run = script.runInThisContext() as (...args: unknown[]) => void;
  run.call(mod.exports, mod.exports, createRequire(bundle), mod, bundle, dirname(bundle));
}

/**
 * Bundles the kbur CLI into one file, dist/coordinator/kbur-bundle.cjs, and writes V8's code cache
 * for it beside it (kbur-bundle.cjs.cache), which coordinator/code-cache.cts runs. Every kbur command
 * is a fresh process: one file starts in 0.15 s where ~300 modules through the ESM loader took 0.25 s.
 * The agent, a long-running service, stays as tsc writes it.
 *
 *   node dist/scripts/bundle.js      (npm run build does it after tsc)
 */
import { execFileSync } from 'node:child_process';
import { chmod, stat, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { NODE_FLAGS } from '../shared/node-flags.js';

const entry = fileURLToPath(new URL('../coordinator/bin.js', import.meta.url));
// Beside bin.js, so that paths resolved from import.meta.url (../../package.json) stay the same.
const outfile = fileURLToPath(new URL('../coordinator/kbur-bundle.cjs', import.meta.url));
const launcher = fileURLToPath(new URL('../coordinator/kbur.cjs', import.meta.url));

const { outputFiles } = await build({
  entryPoints: [entry],
  outfile,
  write: false,
  bundle: true,
  platform: 'node',
  // A classic script, not a module: vm.Script's cachedData (the launcher's code cache) takes scripts only.
  format: 'cjs',
  target: 'node24',
  // shared/version.ts finds package.json from import.meta.url, which a CommonJS file has not.
  define: { 'import.meta.url': 'kburImportMetaUrl' },
  banner: { js: "'use strict';\nconst kburImportMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
  logLevel: 'warning',
  // Every non-ASCII character of strings, regexps and names escaped (esbuild's default, stated):
  // asciiOnly() below counts on it.
  charset: 'ascii',
  // etcd3 reads its .proto files from its own folder at run time; the commands that need it
  // (a scratch etcd, the live etcd) load it from node_modules when they start.
  external: ['etcd3'],
});
// The launcher compiles the bundle as a function body, where bin.ts's shebang would be a syntax error.
await writeFile(outfile, asciiOnly(outputFiles[0]!.text.replace(/^#!.*/, '')), { mode: 0o644 });
await chmod(launcher, 0o755);

// The cache: what V8 compiled to run `kbur --version`, i.e. the whole bundle's top level, written
// by the launcher itself under the flags it runs with (V8 rejects a cache made under other flags).
execFileSync(process.execPath, [...NODE_FLAGS, launcher, '--version'], {
  env: { ...process.env, KBUR_WRITE_COMPILE_CACHE: '1' },
  stdio: 'ignore',
});
await stat(`${outfile}.cache`);

/**
 * One non-ASCII character anywhere makes V8 hold the whole 5.7 MB source, which it keeps for lazy
 * compilation, as a two-byte string: 11 MiB of the coordinator's heap instead of 6, twice that while
 * it loads. esbuild escapes every non-ASCII character of strings, regexps and names (its default
 * charset: 'ascii' above); what is left is in the dependencies' comments, where an escape is as good.
 */
function asciiOnly(text: string): string {
  return text.replace(/[^ -~\t\n\r]/gu, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}

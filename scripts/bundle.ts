/**
 * Bundles the kbur CLI into one file, dist/coordinator/kbur.mjs, the `kbur` that package.json
 * ships and the tests and benchmark run. Every kbur command is a fresh process: loading ~300
 * modules one by one through Node's ESM loader took 0.25 s of every start, one file takes 0.15 s.
 * The agent is a long-running service and stays as tsc writes it.
 *
 *   node dist/scripts/bundle.js      (npm run build does it after tsc)
 */
import { chmod } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const entry = fileURLToPath(new URL('../coordinator/bin.js', import.meta.url));
// Beside bin.js, so that paths resolved from import.meta.url (../../package.json) stay the same.
const outfile = fileURLToPath(new URL('../coordinator/kbur.mjs', import.meta.url));

await build({
  entryPoints: [entry],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // CommonJS dependencies (grpc-js, winston...) call require() for Node's own modules.
  banner: { js: "import { createRequire as kburCreateRequire } from 'node:module'; const require = kburCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});
await chmod(outfile, 0o755);

import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { AGENT_NODE_FLAGS, NODE_FLAGS } from '../../shared/node-flags.js';

/** The first line of a source file of this repository (the tests run from dist/test/unit). */
async function shebang(path: string): Promise<string> {
  return (await readFile(fileURLToPath(new URL(`../../../${path}`, import.meta.url)), 'utf8')).split('\n')[0]!;
}

describe('node flags', () => {
  it('are the same in the binaries’ shebangs as where the sandbox and the benchmark start them', async () => {
    expect(await shebang('coordinator/bin.ts')).to.equal(`#!/usr/bin/env -S node ${NODE_FLAGS.join(' ')}`);
    expect(await shebang('coordinator/kbur.cts')).to.equal(`#!/usr/bin/env -S node ${NODE_FLAGS.join(' ')}`);
    expect(await shebang('agent/bin.ts')).to.equal(`#!/usr/bin/env -S node ${AGENT_NODE_FLAGS.join(' ')}`);
  });

  it('let V8 take the code cache the build wrote for kbur, and V8 refuses it for any other source', () => {
    const bundle = fileURLToPath(new URL('../../coordinator/kbur-bundle.cjs', import.meta.url));
    // What coordinator/kbur.cts does, reporting whether V8 rejected the cache.
    const probe = (suffix: string): string =>
      [
        "const { readFileSync } = require('node:fs');",
        "const { Script } = require('node:vm');",
        "const { wrap } = require('node:module');",
        `const s = new Script(wrap(readFileSync(${JSON.stringify(bundle)}, 'utf8') + ${JSON.stringify(suffix)}), { cachedData: readFileSync(${JSON.stringify(`${bundle}.cache`)}) });`,
        'process.stdout.write(String(s.cachedDataRejected));',
      ].join('\n');
    expect(execFileSync(process.execPath, [...NODE_FLAGS, '-e', probe('')], { encoding: 'utf8' })).to.equal('false');
    // A cache for another build of the bundle is never run: the loader then compiles from source.
    expect(execFileSync(process.execPath, [...NODE_FLAGS, '-e', probe('\n;0;')], { encoding: 'utf8' })).to.equal('true');
  });
});

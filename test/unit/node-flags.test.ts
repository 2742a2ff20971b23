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
});

import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { locateRestoreTool } from '../../shared/restore-tool.js';
import { KburError } from '../../shared/errors.js';
import { findExecutable } from '../../shared/find-executable.js';

describe('finding the etcd restore tool without running it', () => {
  let dir: string;
  const path = process.env.PATH;
  const tool = async (sub: string, name: string, mode = 0o755): Promise<string> => {
    await mkdir(join(dir, sub), { recursive: true });
    const file = join(dir, sub, name);
    await writeFile(file, '#!/bin/sh\n');
    await chmod(file, mode);
    return file;
  };
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kbur-unit-'));
  });
  afterEach(async () => {
    process.env.PATH = path;
    await rm(dir, { recursive: true, force: true });
  });

  it('takes etcdutl from anywhere on PATH before etcdctl, and the first of a name in PATH order', async () => {
    await tool('a', 'etcdctl');
    const etcdutl = await tool('b', 'etcdutl');
    await tool('c', 'etcdutl');
    await tool('d', 'etcd', 0o644);
    process.env.PATH = ['a', 'b', 'c', 'd'].map((d) => join(dir, d)).join(':');
    expect(await locateRestoreTool(undefined)).to.equal(etcdutl);
    expect(await findExecutable(['etcd'])).to.equal(undefined);
  });

  it('refuses a configured tool that is not an executable, naming it, and says so when there is none', async () => {
    const notExecutable = await tool('a', 'etcdctl', 0o644);
    const err = await locateRestoreTool(notExecutable).catch((e: unknown) => e);
    expect(KburError.hasCode(err, 'FAILED_PRECONDITION')).to.equal(true);
    expect((err as KburError).message).to.contain(`${notExecutable} is not an executable`);
    process.env.PATH = join(dir, 'nothing');
    const none = await locateRestoreTool(undefined).catch((e: unknown) => e);
    expect((none as KburError).message).to.contain('neither etcdutl nor etcdctl is on PATH');
  });
});

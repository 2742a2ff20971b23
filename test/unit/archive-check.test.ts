import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { Header } from 'tar';
import { checkArchive, entryProblem } from '../../shared/archive-check.js';
import { KburError } from '../../shared/errors.js';

interface Entry {
  path: string;
  type: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'FIFO';
  linkpath?: string;
  body?: string;
}

/** A tar written byte by byte, so that it can hold what no honest tool writes. */
function tarOf(entries: Entry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const body = Buffer.from(e.body ?? '');
    const header = new Header({
      path: e.path,
      type: e.type,
      linkpath: e.linkpath,
      size: body.length,
      mode: 0o644,
      mtime: new Date(0),
      uid: 0,
      gid: 0,
    });
    const block = Buffer.alloc(512);
    header.encode(block, 0);
    blocks.push(block, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

describe('checkArchive', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kbur-unit-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  const check = async (entries: Entry[]): Promise<unknown> => {
    const file = join(dir, 'a.tar');
    await writeFile(file, tarOf(entries));
    return checkArchive(file).then(
      (r) => r,
      (e: unknown) => e,
    );
  };

  it('accepts files, folders and links that stay inside', async () => {
    const got = await check([
      { path: 'pki/', type: 'Directory' },
      { path: 'pki/ca.crt', type: 'File', body: 'cert' },
      { path: 'pki/current.crt', type: 'SymbolicLink', linkpath: 'ca.crt' },
      { path: 'pki/hard.crt', type: 'Link', linkpath: 'pki/ca.crt' },
    ]);
    expect(got).to.deep.equal({ entries: 4 });
  });

  for (const [what, entry, reason] of [
    ['an absolute path', { path: '/etc/passwd', type: 'File', body: 'x' }, /absolute path/],
    ['a path with ..', { path: 'pki/../../etc/cron.d/evil', type: 'File', body: 'x' }, /leaves the target folder/],
    [
      'a symlink that leaves the target',
      { path: 'pki/key', type: 'SymbolicLink', linkpath: '../../root/.ssh/id_rsa' },
      /leaves the target folder/,
    ],
    ['an absolute symlink', { path: 'pki/key', type: 'SymbolicLink', linkpath: '/etc/shadow' }, /absolute path/],
    ['a hard link outside', { path: 'x', type: 'Link', linkpath: '../outside' }, /leaves the target folder/],
    ['a device file', { path: 'dev/sda', type: 'CharacterDevice' }, /CharacterDevice entries are not extracted/],
    ['a fifo', { path: 'pipe', type: 'FIFO' }, /FIFO entries are not extracted/],
  ] as [string, Entry, RegExp][]) {
    it(`refuses the whole archive for ${what}`, async () => {
      const err = await check([{ path: 'ok.yaml', type: 'File', body: 'fine' }, entry]);
      expect(KburError.hasCode(err, 'DATA_LOSS'), String(err)).to.equal(true);
      expect((err as KburError).message).to.match(reason);
      expect((err as KburError).hint).to.match(/nothing was extracted/);
    });
  }

  it('judges a symlink against its own folder', () => {
    expect(entryProblem('a/b/link', 'SymbolicLink', '../c')).to.equal(undefined);
    expect(entryProblem('a/link', 'SymbolicLink', '../../c')).to.match(/leaves/);
  });
});

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { checkArchive, entryProblem } from '../../shared/archive-check.js';
import { KburError } from '../../shared/errors.js';
import { paxEntry, tarArchive, type TarType } from '../helpers/tar.js';

interface Entry {
  path: string;
  type: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'FIFO';
  linkpath?: string;
  body?: string;
}

const TYPES: Record<Entry['type'], TarType> = {
  File: 'file',
  Directory: 'dir',
  SymbolicLink: 'symlink',
  Link: 'hardlink',
  CharacterDevice: 'chardev',
  FIFO: 'fifo',
};

/** A tar written byte by byte, so that it can hold what no honest tool writes. */
function tarOf(entries: Entry[]): Buffer {
  return tarArchive(entries.map((e) => ({ path: e.path, type: TYPES[e.type], linkpath: e.linkpath, body: e.body })));
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
    ['a .. that stays inside', { path: 'pki/../ok2.yaml', type: 'File', body: 'x' }, /a \.\. in its path/],
    ['a hard link to no file of the archive', { path: 'h', type: 'Link', linkpath: 'pki/missing' }, /not a file earlier in the archive/],
  ] as [string, Entry, RegExp][]) {
    it(`refuses the whole archive for ${what}`, async () => {
      const err = await check([{ path: 'ok.yaml', type: 'File', body: 'fine' }, entry]);
      expect(KburError.hasCode(err, 'DATA_LOSS'), String(err)).to.equal(true);
      expect((err as KburError).message).to.match(reason);
      expect((err as KburError).hint).to.match(/nothing was extracted/);
    });
  }

  it('refuses paths longer than the filesystem takes, before anything is extracted', async () => {
    const file = join(dir, 'long.tar');
    await writeFile(file, tarArchive([paxEntry({ path: 'a'.repeat(300) }), { path: 'short', body: 'x' }]));
    const err = await checkArchive(file).catch((e: unknown) => e);
    expect(KburError.hasCode(err, 'DATA_LOSS'), String(err)).to.equal(true);
    expect((err as Error).message).to.match(/a name longer than 255 bytes/);
    expect(entryProblem(`${'a/'.repeat(2100)}b`, 'File', undefined)).to.match(/longer than 4096 bytes/);
  });

  it('refuses a path that a pax header makes 100 KiB long', async () => {
    const file = join(dir, 'pax.tar');
    await writeFile(file, tarArchive([paxEntry({ path: `pki/${'a/'.repeat(50 << 10)}x` }), { path: 'pki/ok', body: 'x' }]));
    const err = await checkArchive(file).catch((e: unknown) => e);
    expect(KburError.hasCode(err, 'DATA_LOSS'), String(err)).to.equal(true);
    expect((err as Error).message).to.match(/longer than 4096 bytes/);
  });

  it('calls a damaged or truncated archive DATA_LOSS, naming the file', async () => {
    const whole = tarArchive([{ path: 'ok.yaml', body: 'x'.repeat(2000) }]);
    for (const [what, bytes] of [
      ['truncated', whole.subarray(0, 700)],
      ['not a tar', Buffer.from('this is not a tar archive at all'.repeat(40))],
      ['a size no stream holds', tarArchive([{ path: 'big', claimedSize: 8 * 1024 ** 3, body: 'x' }])],
    ] as [string, Buffer][]) {
      const file = join(dir, 'bad.tar');
      await writeFile(file, bytes);
      const err = await checkArchive(file).catch((e: unknown) => e);
      expect(KburError.hasCode(err, 'DATA_LOSS'), `${what}: ${String(err)}`).to.equal(true);
      expect((err as Error).message, what).to.contain(file);
    }
  });

  it("refuses an entry or a link that would be resolved through one of the archive's own symlinks", async () => {
    for (const entries of [
      // x/y -> .. is x's parent, the target folder itself: x/y/z -> .. is then outside it.
      [
        { path: 'x/y', type: 'SymbolicLink', linkpath: '..' },
        { path: 'x/y/z', type: 'SymbolicLink', linkpath: '..' },
      ],
      [
        { path: 'd/b', type: 'SymbolicLink', linkpath: '..' },
        { path: 'd/a', type: 'SymbolicLink', linkpath: 'b/../x' },
      ],
      [
        { path: 'pki', type: 'SymbolicLink', linkpath: '.' },
        { path: 'pki/ca.crt', type: 'File', body: 'x' },
      ],
    ] as Entry[][]) {
      const err = await check(entries);
      expect(KburError.hasCode(err, 'DATA_LOSS'), `${JSON.stringify(entries)}: ${String(err)}`).to.equal(true);
      expect((err as Error).message).to.match(/goes through the link/);
    }
    expect(
      await check([
        { path: 'a', type: 'SymbolicLink', linkpath: 'b' },
        { path: 'b', type: 'SymbolicLink', linkpath: 'c' },
      ]),
    ).to.deep.equal({
      entries: 2,
    });
  });

  it('judges a symlink against its own folder', () => {
    expect(entryProblem('a/b/link', 'SymbolicLink', '../c')).to.equal(undefined);
    expect(entryProblem('a/link', 'SymbolicLink', '../../c')).to.match(/leaves/);
  });
});

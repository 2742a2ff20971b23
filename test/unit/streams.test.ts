import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { KburError } from '../../shared/errors.js';
import { AtomicFile, StreamDigest, checkSnapshotFile, digestFile, fsyncAll, rechunk, writeFileAtomic } from '../../shared/streams.js';

/** A byte string shaped like an etcd Snapshot API stream: 512*n bytes, then their sha256. */
export function fakeSnapshot(blocks: number): Buffer {
  const body = randomBytes(512 * blocks);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}

function digestOf(buf: Buffer, chunk: number): StreamDigest {
  const d = new StreamDigest();
  for (let i = 0; i < buf.length; i += chunk) d.update(buf.subarray(i, i + chunk));
  return d;
}

describe('StreamDigest', () => {
  it('accepts a whole snapshot whatever the chunk sizes', () => {
    const snap = fakeSnapshot(40);
    for (const chunk of [1, 7, 31, 32, 33, 512, 4096, snap.length]) {
      const d = digestOf(snap, chunk);
      expect(d.snapshotIntegrityError(), `chunk ${chunk}`).to.equal(null);
      expect(d.sha256()).to.equal(createHash('sha256').update(snap).digest('hex'));
    }
  });

  it('refuses a snapshot with one byte flipped, as DATA_LOSS', () => {
    const snap = fakeSnapshot(8);
    snap[100] = snap[100]! ^ 0xff;
    const err = digestOf(snap, 1000).snapshotIntegrityError();
    expect(KburError.hasCode(err, 'DATA_LOSS')).to.equal(true);
    expect(err!.message).to.match(/integrity hash mismatch/);
  });

  it('refuses a truncated snapshot by its size', () => {
    const snap = fakeSnapshot(8).subarray(0, 3000);
    const err = digestOf(snap, 1000).snapshotIntegrityError();
    expect(err!.message).to.match(/truncated/);
  });
});

describe('rechunk', () => {
  it('regroups bytes into chunks of at least the size, keeping every byte in order', async () => {
    const data = randomBytes(10_000);
    async function* source(): AsyncGenerator<Buffer> {
      for (let i = 0; i < data.length; i += 300) yield data.subarray(i, i + 300);
    }
    const out: Buffer[] = [];
    for await (const c of rechunk(source(), 4096)) out.push(c);
    expect(Buffer.concat(out).equals(data)).to.equal(true);
    expect(out.slice(0, -1).every((c) => c.length >= 4096)).to.equal(true);
  });
});

describe('AtomicFile', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kbur-unit-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('flushes early while it is written, and still commits every byte, or aborts leaving nothing', async () => {
    const chunk = randomBytes(1 << 20);
    const write = async (f: AtomicFile): Promise<void> => {
      // 40 MiB with pauses: the background flush (every 32 MiB, looked at every 100 ms) runs meanwhile.
      for (let i = 0; i < 40; i++) {
        if (!f.stream.write(chunk)) await once(f.stream, 'drain');
        if (i % 10 === 9) await new Promise((r) => setTimeout(r, 150));
      }
    };
    const kept = new AtomicFile(join(dir, 'kept.db'));
    await write(kept);
    await kept.commit();
    expect((await stat(join(dir, 'kept.db'))).size).to.equal(40 << 20);
    const dropped = new AtomicFile(join(dir, 'dropped.db'));
    await write(dropped);
    await dropped.abort();
    expect(await readdir(dir)).to.deep.equal(['kept.db']);
  });

  it('shows nothing under the final name until commit, then a 0600 file', async () => {
    const f = new AtomicFile(join(dir, 'a.db'));
    f.stream.write('hello ');
    await once(f.stream, 'ready');
    expect(await readdir(dir)).to.deep.equal(['a.db.part']);
    f.stream.end('world');
    await f.commit();
    expect(await readdir(dir)).to.deep.equal(['a.db']);
    expect(await readFile(join(dir, 'a.db'), 'utf8')).to.equal('hello world');
    expect((await stat(join(dir, 'a.db'))).mode & 0o777).to.equal(0o600);
  });

  it('leaves nothing behind when aborted', async () => {
    const f = new AtomicFile(join(dir, 'a.db'));
    f.stream.write('partial');
    await f.abort();
    expect(await readdir(dir)).to.deep.equal([]);
  });

  it('survives an abort while writes are still in flight', async () => {
    const f = new AtomicFile(join(dir, 'a.db'));
    for (let i = 0; i < 64; i++) f.stream.write(Buffer.alloc(1 << 16, i));
    await f.abort();
    await new Promise((r) => setTimeout(r, 50));
    expect(await readdir(dir)).to.deep.equal([]);
  });

  it('does not commit a file whose write failed', async () => {
    const f = new AtomicFile(join(dir, 'missing-dir', 'a.db'));
    f.stream.write('x');
    const err = await f.commit().catch((e: unknown) => e);
    expect((err as NodeJS.ErrnoException).code).to.equal('ENOENT');
  });

  it('never replaces a file written with noOverwrite', async () => {
    await writeFile(join(dir, 'manifest.json'), 'first');
    const err = await writeFileAtomic(join(dir, 'manifest.json'), 'second', { noOverwrite: true }).catch((e: unknown) => e);
    expect((err as NodeJS.ErrnoException).code).to.equal('EEXIST');
    expect(await readFile(join(dir, 'manifest.json'), 'utf8')).to.equal('first');
    expect(await readdir(dir)).to.deep.equal(['manifest.json']);
  });
});

describe('digestFile', () => {
  it('checks the snapshot integrity hash of a file on disk', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kbur-unit-'));
    try {
      const snap = fakeSnapshot(16);
      await writeFile(join(dir, 's.db'), snap);
      const got = await digestFile(join(dir, 's.db'), { snapshot: true });
      expect(got.size).to.equal(snap.length);
      snap[snap.length - 40] = snap[snap.length - 40]! ^ 1;
      await writeFile(join(dir, 's.db'), snap);
      const err = await digestFile(join(dir, 's.db'), { snapshot: true }).catch((e: unknown) => e);
      expect(KburError.hasCode(err, 'DATA_LOSS')).to.equal(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reads a file larger than its buffer into the same sha256 and integrity hash as the bytes themselves', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kbur-unit-'));
    try {
      // 2.5 MiB and 32 bytes: the reused 1 MiB buffer is refilled three times, the hash's tail spans a refill.
      const snap = fakeSnapshot(5120);
      await writeFile(join(dir, 's.db'), snap);
      const got = await digestFile(join(dir, 's.db'), { snapshot: true });
      expect(got).to.deep.equal({ size: snap.length, sha256: createHash('sha256').update(snap).digest('hex') });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('checkSnapshotFile refuses a whole snapshot that is not the one wanted, and a damaged one, naming the file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kbur-unit-'));
    try {
      const path = join(dir, 's.db');
      const snap = fakeSnapshot(16);
      await writeFile(path, snap);
      const want = { size: snap.length, sha256: createHash('sha256').update(snap).digest('hex') };
      expect(await checkSnapshotFile(path, want, 'the copy')).to.deep.equal(want);
      const other = await checkSnapshotFile(path, { ...want, sha256: '0'.repeat(64) }, 'the copy').catch((e: unknown) => e);
      expect(KburError.hasCode(other, 'DATA_LOSS')).to.equal(true);
      expect((other as Error).message).to.equal(
        `the copy ${path} has ${snap.length} bytes with sha256 ${want.sha256}; expected ${snap.length} bytes with sha256 ${'0'.repeat(64)}`,
      );
      snap[100] = snap[100]! ^ 1;
      await writeFile(path, snap);
      const damaged = await checkSnapshotFile(path, want, 'the copy').catch((e: unknown) => e);
      expect((damaged as Error).message).to.match(new RegExp(`^the copy ${path} is damaged: etcd snapshot integrity hash mismatch`));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('fsyncAll', () => {
  it('syncs files and directories alike, and fails on the first path it cannot open instead of passing over it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kbur-fsync-'));
    try {
      const files = await Promise.all(
        Array.from({ length: 20 }, async (_, i) => {
          const f = join(dir, `f${i}`);
          await writeFile(f, `file ${i}\n`);
          return f;
        }),
      );
      await fsyncAll([...files, dir]);
      const err = await fsyncAll([...files, join(dir, 'gone')]).catch((e: NodeJS.ErrnoException) => e);
      expect(err).to.be.instanceOf(Error);
      expect((err as NodeJS.ErrnoException).code).to.equal('ENOENT');
      await fsyncAll([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

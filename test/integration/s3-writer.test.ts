import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { KburError } from '../../shared/errors.js';
import { createLogger } from '../../shared/log.js';
import { S3Repository } from '../../coordinator/repository/s3.js';
import { PART_SIZE } from '../../coordinator/repository/s3-writer.js';
import { startS3Server, type S3Server } from '../sandbox/s3.js';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Writes `data` into an artifact writer in pieces of `piece` bytes, with backpressure, as the seal pipeline does. */
async function writeAll(stream: NodeJS.WritableStream, data: Buffer, piece: number): Promise<void> {
  for (let o = 0; o < data.length; o += piece) {
    if (!stream.write(data.subarray(o, o + piece))) await new Promise((r) => stream.once('drain', r));
  }
}

describe('S3 artifact writer (multipart upload from reused part buffers, a real S3-compatible server)', function () {
  this.timeout(120_000);
  let root: string;
  let s3: S3Server;
  let repo: S3Repository;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'kbur-s3-writer-'));
    s3 = await startS3Server({ dir: join(root, 's3') });
    repo = await S3Repository.open(
      {
        type: 's3',
        bucket: s3.bucket,
        prefix: 'w',
        endpoint: s3.endpoint,
        region: 'us-east-1',
        forcePathStyle: true,
        credentialsFile: s3.credentialsFile,
      },
      { log: createLogger({ component: 'test', level: 'error' }), requestTimeoutMs: 30_000 },
    );
  });

  after(async () => {
    await s3?.stop();
    await rm(root, { recursive: true, force: true });
  });

  async function stored(key: string): Promise<Buffer | undefined> {
    const found = (await s3.objects()).find((o) => o.key === key);
    return found ? readFile(found.file) : undefined;
  }

  it('stores every size byte for byte: empty, small, one byte short of a part, one part, parts and a bit', async () => {
    const sizes = [0, 1000, PART_SIZE - 1, PART_SIZE, 2 * PART_SIZE + 12345];
    const backup = await repo.createBackup('c', '20261130T000000Z-0001');
    for (const size of sizes) {
      const data = randomBytes(size);
      const before = s3.log().length;
      const w = await backup.artifact(`a-${size}.bin`);
      await writeAll(w.stream, data, 65_541);
      await w.commit();
      const got = await stored(`w/c/backups/20261130T000000Z-0001/a-${size}.bin`);
      expect(got && sha256(got), `artifact of ${size} bytes`).to.equal(sha256(data));
      const multipart = /partNumber=/.test(s3.log().slice(before));
      expect(multipart, `artifact of ${size} bytes: multipart`).to.equal(size >= PART_SIZE);
    }
    expect(await s3.pendingMultipartUploads()).to.deep.equal([]);
  });

  it('abort() leaves no object and no multipart upload', async () => {
    const backup = await repo.createBackup('c', '20261130T000000Z-0002');
    const w = await backup.artifact('cut.bin');
    await writeAll(w.stream, randomBytes(PART_SIZE + 100), 65_536);
    await s3.waitForLog(/partNumber=1&/);
    await w.abort();
    expect(await stored('w/c/backups/20261130T000000Z-0002/cut.bin')).to.equal(undefined);
    expect(await s3.pendingMultipartUploads()).to.deep.equal([]);
  });

  it('fails the stream at once when the server dies mid-upload, and commit() says so', async () => {
    const backup = await repo.createBackup('c', '20261130T000000Z-0003');
    const w = await backup.artifact('dead.bin');
    await writeAll(w.stream, randomBytes(PART_SIZE), 65_536);
    await s3.kill();
    try {
      const err = await w.commit().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(KburError.is(err), String(err)).to.equal(true);
      expect((err as KburError).message).to.match(/upload of s3:\/\/\S+\/dead\.bin failed/);
      expect(w.stream.destroyed).to.equal(true);
    } finally {
      await s3.restart();
    }
  });
});

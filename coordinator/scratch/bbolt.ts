import { open, type FileHandle } from 'node:fs/promises';
import { KburError } from '../../shared/errors.js';
import type { EtcdMemberInfo } from '../../shared/manifest.js';

/**
 * Reads the member list an etcd snapshot carries, straight from its bbolt file: a restore (and so
 * a scratch etcd) replaces it with the new cluster's, so it can only be read before. bbolt's
 * layout (go.etcd.io/bbolt: page.go, meta, bucket.go): two meta pages at the start, the newer of
 * which points at the root bucket's B+tree; etcd keeps its members in the bucket "members", keyed
 * by the member id in hex, valued with the member as JSON. Only pages on the way are read.
 */
export async function readSnapshotMembers(file: string): Promise<{ members: EtcdMemberInfo[]; clusterVersion: string }> {
  const fd = await open(file, 'r');
  try {
    const db = await Bolt.open(fd);
    const members: EtcdMemberInfo[] = [];
    const bucket = await db.bucket(db.root, 'members');
    if (bucket) {
      await db.forEach(bucket, (key, value) => {
        const m = JSON.parse(value.toString('utf8')) as { peerURLs?: string[]; name?: string; clientURLs?: string[]; isLearner?: boolean };
        members.push({
          id: key.toString('utf8'),
          name: m.name ?? '',
          peerUrls: m.peerURLs ?? [],
          clientUrls: m.clientURLs ?? [],
          isLearner: Boolean(m.isLearner),
        });
      });
    }
    let clusterVersion = '';
    const cluster = await db.bucket(db.root, 'cluster');
    if (cluster) await db.forEach(cluster, (k, v) => void (k.toString() === 'clusterVersion' && (clusterVersion = v.toString('utf8'))));
    return { members, clusterVersion };
  } catch (err) {
    if (KburError.is(err)) throw err;
    throw new KburError('DATA_LOSS', `${file} is not a readable etcd database: ${(err as Error).message}`, { cause: err });
  } finally {
    await fd.close();
  }
}

const MAGIC = 0xed0cdaed;
const PAGE_HEADER = 16;
const ELEMENT = 16;
const BRANCH = 0x01;
const LEAF = 0x02;
const BUCKET_LEAF = 0x01;

/** A B+tree to walk: a page on disk, or a bucket stored inline in its parent's value. */
type Tree = { pgid: bigint } | { inline: Buffer };

class Bolt {
  private constructor(
    private readonly fd: FileHandle,
    private readonly pageSize: number,
    readonly root: Tree,
  ) {}

  static async open(fd: FileHandle): Promise<Bolt> {
    const first = Buffer.alloc(4096 + PAGE_HEADER + 64);
    await fd.read(first, 0, first.length, 0);
    const meta0 = readMeta(first.subarray(PAGE_HEADER));
    if (!meta0) throw new Error('no bbolt meta page at the start (not an etcd snapshot)');
    const second = Buffer.alloc(PAGE_HEADER + 64);
    await fd.read(second, 0, second.length, meta0.pageSize);
    const meta1 = readMeta(second.subarray(PAGE_HEADER));
    const meta = meta1 && meta1.txid > meta0.txid ? meta1 : meta0;
    return new Bolt(fd, meta.pageSize, { pgid: meta.root });
  }

  private async page(t: Tree): Promise<Buffer> {
    if ('inline' in t) return t.inline;
    const header = Buffer.alloc(PAGE_HEADER);
    const at = Number(t.pgid) * this.pageSize;
    await this.fd.read(header, 0, PAGE_HEADER, at);
    const size = (header.readUInt32LE(12) + 1) * this.pageSize;
    if (size > 1 << 30) throw new Error(`page ${t.pgid} claims ${size} bytes`);
    const page = Buffer.alloc(size);
    const { bytesRead } = await this.fd.read(page, 0, size, at);
    if (bytesRead < PAGE_HEADER) throw new Error(`page ${t.pgid} is past the end of the file`);
    return page;
  }

  /** Every key/value of a tree, in order (a nested bucket is a value with the bucket flag). */
  async forEach(t: Tree, fn: (key: Buffer, value: Buffer, flags: number) => void): Promise<void> {
    const p = await this.page(t);
    const flags = p.readUInt16LE(8);
    const count = p.readUInt16LE(10);
    for (let i = 0; i < count; i++) {
      const e = PAGE_HEADER + i * ELEMENT;
      if (flags & BRANCH) {
        await this.forEach({ pgid: p.readBigUInt64LE(e + 8) }, fn);
      } else if (flags & LEAF) {
        const f = p.readUInt32LE(e);
        const pos = e + p.readUInt32LE(e + 4);
        const ksize = p.readUInt32LE(e + 8);
        const vsize = p.readUInt32LE(e + 12);
        fn(p.subarray(pos, pos + ksize), p.subarray(pos + ksize, pos + ksize + vsize), f);
      } else {
        throw new Error(`page of unexpected type ${flags}`);
      }
    }
  }

  /** A bucket directly under `parent`, or undefined. */
  async bucket(parent: Tree, name: string): Promise<Tree | undefined> {
    let found: Tree | undefined;
    await this.forEach(parent, (key, value, f) => {
      if (!(f & BUCKET_LEAF) || key.toString('latin1') !== name) return;
      const root = value.readBigUInt64LE(0);
      found = root === 0n ? { inline: Buffer.from(value.subarray(16)) } : { pgid: root };
    });
    return found;
  }
}

function readMeta(b: Buffer): { pageSize: number; root: bigint; txid: bigint } | undefined {
  if (b.length < 64 || b.readUInt32LE(0) !== MAGIC) return undefined;
  if (fnv64a(b.subarray(0, 56)) !== b.readBigUInt64LE(56)) return undefined;
  return { pageSize: b.readUInt32LE(8), root: b.readBigUInt64LE(16), txid: b.readBigUInt64LE(48) };
}

function fnv64a(data: Buffer): bigint {
  let h = 0xcbf29ce484222325n;
  for (const byte of data) h = ((h ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return h;
}

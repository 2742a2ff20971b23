import { createReadStream } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { link, mkdir, readFile, readdir, rename, rm, stat, statfs, utimes } from 'node:fs/promises';
import { dirname, join, normalize, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { KburError } from '../../shared/errors.js';
import { pathExists } from '../../shared/path-exists.js';
import { BACKUP_ID, checkId, parseManifest, verificationSchema, type Manifest, type Verification } from '../../shared/manifest.js';
import { AtomicFile, digestFile, fsyncDir, writeFileAtomic, type FileDigest } from '../../shared/streams.js';
import { parseLockRecord, type LockHolder } from './lock.js';
import type { ArtifactWriter, BackupListing, BackupWriter, Repository } from './repository.js';

const DIR_MODE = 0o700;

/** A repository on a local (or mounted) filesystem: 0700 directories, 0600 files, atomic writes. */
export class LocalRepository implements Repository {
  constructor(readonly location: string) {}

  async createBackup(cluster: string, id: string): Promise<BackupWriter> {
    const dir = this.backupDir(cluster, id);
    try {
      await mkdir(dirname(dir), { recursive: true, mode: DIR_MODE });
      await mkdir(dir, { mode: DIR_MODE });
    } catch (err) {
      throw new KburError('FAILED_PRECONDITION', `cannot create backup folder ${dir}: ${(err as Error).message}`, {
        cause: err,
        hint: 'check that the repository path exists, is writable by this user and has free space',
      });
    }
    return {
      id,
      location: dir,
      artifact: async (relPath: string): Promise<ArtifactWriter> => {
        const path = this.inside(dir, relPath);
        await mkdir(dirname(path), { recursive: true, mode: DIR_MODE });
        return new AtomicFile(path);
      },
      discard: (relPath: string) => rm(this.inside(dir, relPath), { force: true }),
      writeManifest: (manifest: Manifest) =>
        writeFileAtomic(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n', { noOverwrite: true }),
    };
  }

  async listBackups(cluster: string): Promise<BackupListing[]> {
    const root = join(this.location, cluster, 'backups');
    let ids: string[];
    try {
      ids = (await readdir(root, { withFileTypes: true })).filter((e) => e.isDirectory() && BACKUP_ID.test(e.name)).map((e) => e.name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw new KburError('FAILED_PRECONDITION', `cannot read repository ${root}: ${(err as Error).message}`, { cause: err });
    }
    ids.sort();
    return Promise.all(
      ids.map(async (id): Promise<BackupListing> => {
        try {
          return { id, manifest: await this.readManifest(cluster, id) };
        } catch (err) {
          return { id, problem: (err as Error).message };
        }
      }),
    );
  }

  async readManifest(cluster: string, id: string): Promise<Manifest> {
    const dir = this.backupDir(cluster, id);
    const file = join(dir, 'manifest.json');
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      throw (await pathExists(dir))
        ? new KburError('FAILED_PRECONDITION', `backup ${id} has no manifest.json: it never completed (interrupted, or still running)`, {
            hint: 'use another backup (kbur list); an incomplete backup is never restored from',
          })
        : new KburError('NOT_FOUND', `no backup ${id} in ${join(this.location, cluster, 'backups')}`, {
            hint: 'kbur list shows the backups there are',
          });
    }
    return parseManifest(safeJson(text), file);
  }

  async openArtifact(cluster: string, id: string, relPath: string): Promise<Readable> {
    const path = this.artifactLocation(cluster, id, relPath);
    try {
      await stat(path);
    } catch (err) {
      throw new KburError('DATA_LOSS', `artifact ${relPath} of backup ${id} is missing: ${(err as Error).message}`, { cause: err });
    }
    // Chunks of a size that suits gRPC messages: artifacts are read to be uploaded to agents.
    return createReadStream(path, { highWaterMark: 256 << 10 });
  }

  digestArtifact(cluster: string, id: string, relPath: string, opts: { snapshot: boolean; signal: AbortSignal }): Promise<FileDigest> {
    return digestFile(this.artifactLocation(cluster, id, relPath), opts);
  }

  localFile(cluster: string, id: string, relPath: string): string {
    return this.artifactLocation(cluster, id, relPath);
  }

  artifactLocation(cluster: string, id: string, relPath: string): string {
    return this.inside(this.backupDir(cluster, id), relPath);
  }

  writeVerification(cluster: string, id: string, verification: Verification): Promise<void> {
    return writeFileAtomic(join(this.backupDir(cluster, id), 'verify.json'), JSON.stringify(verification, null, 2) + '\n');
  }

  async readVerification(cluster: string, id: string): Promise<Verification | undefined> {
    try {
      const parsed = verificationSchema.safeParse(JSON.parse(await readFile(join(this.backupDir(cluster, id), 'verify.json'), 'utf8')));
      return parsed.success ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }

  async writeJournal(cluster: string, restoreId: string, journal: string): Promise<void> {
    const dir = join(this.location, cluster, 'restores', checkId(restoreId, 'restore', RESTORE_ID_HINT));
    await mkdir(dir, { recursive: true, mode: DIR_MODE });
    await writeFileAtomic(join(dir, 'journal.json'), journal);
  }

  async readJournal(cluster: string, restoreId: string): Promise<string | undefined> {
    const file = join(this.location, cluster, 'restores', checkId(restoreId, 'restore', RESTORE_ID_HINT), 'journal.json');
    return readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
  }

  async listRestores(cluster: string): Promise<string[]> {
    try {
      const entries = await readdir(join(this.location, cluster, 'restores'), { withFileTypes: true });
      return entries.filter((e) => e.isDirectory() && BACKUP_ID.test(e.name)).map((e) => e.name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  async deleteBackup(cluster: string, id: string): Promise<void> {
    const dir = this.backupDir(cluster, id);
    await rm(join(dir, 'manifest.json'), { force: true });
    await fsyncDir(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    await rm(dir, { recursive: true, force: true });
    await fsyncDir(dirname(dir));
  }

  async space(cluster: string): Promise<{ free: number; total: number } | undefined> {
    for (const dir of [join(this.location, cluster), this.location]) {
      try {
        const s = await statfs(dir);
        return { free: s.bavail * s.bsize, total: s.blocks * s.bsize };
      } catch {
        // not there yet: ask its parent
      }
    }
    return undefined;
  }

  async tryLock(cluster: string, holder: LockHolder): Promise<boolean> {
    const file = this.lockFile(cluster);
    await mkdir(dirname(file), { recursive: true, mode: DIR_MODE });
    try {
      // Written whole under a name of its own, then linked: link() fails with EEXIST if held.
      await writeFileAtomic(file, JSON.stringify(holder, null, 2) + '\n', { noOverwrite: true, partPath: `${file}.${holder.token}.part` });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    }
  }

  async readLock(cluster: string): Promise<LockHolder | undefined> {
    const file = this.lockFile(cluster);
    let text: string;
    let mtime: Date;
    try {
      [text, { mtime }] = await Promise.all([readFile(file, 'utf8'), stat(file)]);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const holder = parseLockRecord(text, file);
    // The record is never rewritten: renewals move the file's mtime to the new end of the lease.
    return mtime.getTime() > Date.parse(holder.expiresAt) ? { ...holder, expiresAt: mtime.toISOString() } : holder;
  }

  async renewLock(cluster: string, holder: LockHolder): Promise<boolean> {
    const current = await this.readLock(cluster).catch(() => undefined);
    if (current?.token !== holder.token) return false;
    // Only the mtime changes: a lock removed meanwhile is not brought back (ENOENT), nor is a
    // newer holder's record replaced.
    try {
      await utimes(this.lockFile(cluster), new Date(), new Date(holder.expiresAt));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  async removeLock(cluster: string, token: string | undefined): Promise<boolean> {
    const file = this.lockFile(cluster);
    // Renamed away first: of two removers of one lock, exactly one gets it.
    const aside = `${file}.${randomBytes(8).toString('hex')}.removing`;
    try {
      await rename(file, aside);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    if (token !== undefined) {
      let held: string | undefined;
      try {
        held = parseLockRecord(await readFile(aside, 'utf8'), file).token;
      } catch {
        held = undefined;
      }
      if (held !== token) {
        // Someone else's lock: put it back (unless a new one was taken meanwhile; its holder then sees it lost).
        await link(aside, file).catch(() => undefined);
        await rm(aside, { force: true });
        return false;
      }
    }
    await rm(aside, { force: true });
    await fsyncDir(dirname(file));
    return true;
  }

  private lockFile(cluster: string): string {
    return join(this.location, cluster, 'kbur.lock');
  }

  private backupDir(cluster: string, id: string): string {
    return join(this.location, cluster, 'backups', checkId(id, 'backup', BACKUP_ID_HINT));
  }

  /** A path from a manifest, kept inside the backup folder whatever it says. */
  private inside(dir: string, relPath: string): string {
    const path = normalize(join(dir, relPath));
    if (!path.startsWith(dir + sep)) {
      throw new KburError('DATA_LOSS', `artifact path "${relPath}" leaves the backup folder`, {
        hint: 'the manifest was tampered with; do not restore from it',
      });
    }
    return path;
  }
}

const BACKUP_ID_HINT = 'kbur list shows the ids';
const RESTORE_ID_HINT = 'the restore id is printed when a restore starts, and is the folder name under restores/';

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

import { chmod, chown, lstat, mkdir, readdir, readlink, rename, rm, rmdir } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { extract } from 'tar';
import type { StageSnapshotRequest } from '../../proto/gen/kbur/v1/agent.js';
import { checkArchive } from '../../shared/archive-check.js';
import { byCodeUnits } from '../../shared/order.js';
import { digestFile, fsyncAll } from '../../shared/streams.js';
import { heldDir, holdManifest, manifestsDir } from './control-plane.js';
import { pathExists } from '../../shared/path-exists.js';
import { KBUR_DIR, kburDir } from '../../shared/restore-names.js';
import { readRecord, writeRecord, type RestoreRecord } from './record.js';
import { receiveUpload } from './stage.js';
import { stepAlreadyDone, stepDone, type StepResult } from './step.js';
import { readdressTree } from '../kubernetes/readdress.js';
import type { AgentState } from '../state.js';

/**
 * Restores the node's kubernetes dir from its archive (a rebuilt machine): the archive is received
 * and checked whole, unpacked into a folder of kbur's inside the kubernetes dir, then moved in file
 * by file. Static pod manifests are held back (in this restore's held folder): the restore starts
 * etcd, then the rest, once the data dir is in place. A file it replaces is first moved aside to
 * <kubernetesDir>/kbur-aside-<id>/; files the archive does not have stay.
 */
export async function restoreKubernetesDir(
  s: AgentState,
  messages: AsyncIterable<StageSnapshotRequest>,
  signal: AbortSignal,
): Promise<StepResult> {
  const upload = await receiveUpload(s, messages, { name: 'kubernetes.tar', snapshot: false, signal });
  const record = await readRecord(s.config.stateDir, upload.restoreId);
  if (record.kubernetes?.done) return stepAlreadyDone();
  await checkArchive(upload.path);

  const dir = s.config.kubernetesDir;
  const work = kburDir(dir, 'unpack', upload.restoreId);
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { mode: 0o700 });
  await extract({ file: upload.path, cwd: work, strict: true, preserveOwner: true, preservePaths: false });
  // A node moved to a new address (kbur restore --to): its archive is fitted before it is put in place.
  const readdressed = upload.readdress?.length ? await readdressTree(work, upload.readdress) : [];

  record.kubernetes ??= { aside: kburDir(dir, 'aside', upload.restoreId), replaced: [], added: [], addedDirs: [], done: false };
  const k = record.kubernetes;
  k.addedDirs ??= [];
  const manifests = relative(dir, manifestsDir(s));
  let unchanged = 0;
  const entries = (await readdir(work, { recursive: true, withFileTypes: true })).sort((a, b) =>
    byCodeUnits(join(a.parentPath, a.name), join(b.parentPath, b.name)),
  );
  // First what goes where, changing nothing but the manifests held back; parents sort before their children.
  const moves: { src: string; rel: string; target: string; how: 'dir' | 'add' | 'replace'; file: boolean }[] = [];
  for (const entry of entries) {
    const src = join(entry.parentPath, entry.name);
    const rel = relative(work, src);
    if (KBUR_DIR.test(rel)) continue;
    if (!entry.isDirectory() && dirname(rel) === manifests) await holdBack(s, record, entry.name);
    const target = await currentPath(s, record, rel);
    const exists = await pathExists(target);
    const file = entry.isFile();
    if (entry.isDirectory()) {
      if (!exists) moves.push({ src, rel, target, how: 'dir', file });
    } else if (!exists) moves.push({ src, rel, target, how: 'add', file });
    else if (await sameEntry(src, target)) unchanged++;
    else moves.push({ src, rel, target, how: 'replace', file });
  }
  // Everything it adds is recorded in one write before any of it is in place: a rollback skips what
  // is not there yet. A file it replaces is recorded, and moved aside, one at a time.
  for (const m of moves) {
    if (m.how === 'dir' && !k.addedDirs.includes(m.rel)) k.addedDirs.push(m.rel);
    if (m.how === 'add' && !k.added.includes(m.rel)) k.added.push(m.rel);
  }
  await writeRecord(s.config.stateDir, record);
  for (const { src, rel, target, how } of moves) {
    if (how === 'dir') {
      await mkdir(target);
      await copyModeAndOwner(src, target);
      continue;
    }
    if (how === 'replace') {
      const aside = join(k.aside, rel);
      await mkdir(dirname(aside), { recursive: true, mode: 0o700 });
      if (!k.replaced.includes(rel)) k.replaced.push(rel);
      await writeRecord(s.config.stateDir, record);
      // A resumed restore may have moved the old file aside already: never overwrite that copy.
      if (!(await pathExists(aside))) await rename(target, aside);
    }
    await mkdir(dirname(target), { recursive: true, mode: 0o700 });
    await rename(src, target);
  }
  // On disk before the step is recorded done: after a crash, --resume puts back a file that came out
  // empty or short (it differs from the archive's), but would skip a step recorded done.
  await fsyncAll([
    ...moves.filter((m) => m.file).map((m) => m.target),
    ...new Set(moves.flatMap((m) => [dirname(m.target), ...(m.how === 'replace' ? [dirname(join(k.aside, m.rel))] : [])])),
  ]);
  await rm(work, { recursive: true, force: true });
  record.kubernetes.done = true;
  await writeRecord(s.config.stateDir, record);
  const { replaced, added, aside } = record.kubernetes;
  const held = record.held.map((h) => h.name);
  return stepDone([
    `restored ${dir} from its archive: ${replaced.length} files replaced${replaced.length ? ` (the old ones are in ${aside})` : ''}, ${added.length} added, ${unchanged} unchanged` +
      (held.length ? `; static pod manifests held back until etcd's data is in place: ${held.join(', ')}` : ''),
    ...readdressed,
  ]);
}

/**
 * A static pod manifest of the archive goes to this restore's held folder, not to manifests/: a
 * running one is held first (as the stop step does), a new one is noted there (the caller writes
 * the record) so that the start steps put it in place.
 */
async function holdBack(s: AgentState, record: RestoreRecord, name: string): Promise<void> {
  await holdManifest(s, record, name);
  if (record.held.some((h) => h.name === name)) return;
  // Recorded with what the restore adds, in the same write, before the file is put in the held folder.
  record.held.push({ name, from: join(manifestsDir(s), name), to: join(heldDir(s, record.restoreId), name) });
}

/** Undoes restoreKubernetesDir: what it put in place goes to <kubernetesDir>/kbur-restored-<id>/, the old files come back. */
export async function rollbackKubernetesDir(s: AgentState, record: RestoreRecord): Promise<string[]> {
  const k = record.kubernetes;
  if (!k) return [];
  const restoredAside = kburDir(s.config.kubernetesDir, 'restored', record.restoreId);
  for (const rel of [...k.added, ...k.replaced]) {
    const target = await currentPath(s, record, rel);
    if (!(await pathExists(target))) continue;
    await mkdir(dirname(join(restoredAside, rel)), { recursive: true, mode: 0o700 });
    await rename(target, join(restoredAside, rel));
    if (k.replaced.includes(rel) && (await pathExists(join(k.aside, rel)))) await rename(join(k.aside, rel), target);
  }
  // Folders the restore made, once empty again: a reset node is left as it was found.
  for (const rel of [...(k.addedDirs ?? [])].sort((a, b) => b.length - a.length)) {
    await rmdir(join(s.config.kubernetesDir, rel)).catch(() => undefined);
  }
  record.kubernetes = undefined;
  await writeRecord(s.config.stateDir, record);
  return [
    `put back ${k.replaced.length} files of ${s.config.kubernetesDir} the restore had replaced; what it had put there (${k.added.length + k.replaced.length} files) is in ${restoredAside}`,
  ];
}

/**
 * Where a file of the kubernetes dir lives now: a manifest this restore holds lives in the held
 * folder (a new one goes there), until the start steps put it back in manifests/.
 */
async function currentPath(s: AgentState, record: RestoreRecord, rel: string): Promise<string> {
  const inManifests = relative(manifestsDir(s), join(s.config.kubernetesDir, rel));
  if (!inManifests.includes('/') && !inManifests.startsWith('..')) {
    const held = record.held.find((h) => h.name === inManifests);
    if (held && ((await pathExists(held.to)) || !(await pathExists(held.from)))) return held.to;
  }
  return join(s.config.kubernetesDir, rel);
}

async function copyModeAndOwner(from: string, to: string): Promise<void> {
  const st = await lstat(from);
  await chown(to, st.uid, st.gid);
  await chmod(to, st.mode & 0o7777);
}

async function sameEntry(a: string, b: string): Promise<boolean> {
  const [sa, sb] = await Promise.all([lstat(a), lstat(b)]);
  if ((sa.mode & 0o170777) !== (sb.mode & 0o170777) || sa.uid !== sb.uid || sa.gid !== sb.gid) return false;
  if (sa.isSymbolicLink()) return (await readlink(a)) === (await readlink(b));
  if (!sa.isFile() || sa.size !== sb.size) return false;
  const [ha, hb] = await Promise.all([digestFile(a), digestFile(b)]);
  return ha.sha256 === hb.sha256;
}

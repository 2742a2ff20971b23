import type { Stats } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { create } from 'tar';
import { KburError } from '../../shared/errors.js';
import { KBUR_DIR } from '../../shared/restore-names.js';

export interface KubernetesArchive {
  /** The tar stream: modes, owners and mtimes kept; symlinks stored as links. */
  data: Readable;
  /** Entries in the archive, known once `data` ended. */
  fileCount(): number;
  /** Files (relative paths) that hold a kubeadm ClusterConfiguration. */
  kubeadmConfigFiles: string[];
}

/** Archives the node's kubernetes dir (/etc/kubernetes) as a tar stream. */
export async function archiveKubernetesDir(dir: string, signal: AbortSignal): Promise<KubernetesArchive> {
  await assertDirectory(dir);
  const kubeadmConfigFiles = await findKubeadmConfigs(dir);
  let count = 0;
  const pack = create(
    {
      cwd: dir,
      portable: false,
      noPax: false,
      filter: (path: string, st: Stats | unknown) => {
        // Sockets and fifos are not configuration and cannot be archived meaningfully; kbur's own
        // folders hold what a restore moved, not the node's configuration.
        const s = st as Stats;
        const keep = !(typeof s.isSocket === 'function' && (s.isSocket() || s.isFIFO())) && !KBUR_DIR.test(path.replace(/^\.\//, ''));
        if (keep) count++;
        return keep;
      },
    },
    ['.'],
  );
  const data = Readable.from(pack, { objectMode: false, signal });
  return { data, fileCount: () => count, kubeadmConfigFiles };
}

async function assertDirectory(dir: string): Promise<void> {
  try {
    if ((await stat(dir)).isDirectory()) return;
  } catch (err) {
    throw new KburError('FAILED_PRECONDITION', `kubernetes dir ${dir} cannot be read: ${(err as Error).message}`, {
      cause: err,
      hint: "set kubernetesDir in the agent config to the node's /etc/kubernetes",
    });
  }
  throw new KburError('FAILED_PRECONDITION', `kubernetes dir ${dir} is not a directory`, {
    hint: "set kubernetesDir in the agent config to the node's /etc/kubernetes",
  });
}

const CONFIG_FILE = /\.(ya?ml|json|conf)$/;
const CLUSTER_CONFIGURATION = /^\s*"?kind"?\s*:\s*"?ClusterConfiguration"?\s*,?\s*$/m;
const MAX_CONFIG_SIZE = 1 << 20;

/** kubeadm keeps its config wherever the operator put it; look at every small YAML outside pki/. */
export async function findKubeadmConfigs(dir: string): Promise<string[]> {
  const found: string[] = [];
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  for (const entry of entries) {
    const full = join(entry.parentPath, entry.name);
    const rel = relative(dir, full);
    if (!entry.isFile() || !CONFIG_FILE.test(entry.name) || rel.startsWith('pki/')) continue;
    const st = await stat(full);
    if (st.size > MAX_CONFIG_SIZE) continue;
    if (CLUSTER_CONFIGURATION.test(await readFile(full, 'utf8'))) found.push(rel);
  }
  return found.sort();
}

import { constants } from 'node:fs';
import { stat } from 'node:fs/promises';
import { KburError } from './errors.js';
import { childEnv, runTool } from './child.js';
import { findExecutable } from './find-executable.js';
import { pathExists } from './path-exists.js';

export interface RestoreTool {
  kind: 'etcdutl' | 'etcdctl';
  path: string;
  version: string;
  /** etcdutl of etcd 3.5.10 and later: --bump-revision and --mark-compacted. */
  canBumpRevision: boolean;
}

/** Nothing inherited: an ETCD_... or ETCDCTL_... variable that shadows a flag makes etcd tools refuse to run. */
export function toolEnv(): NodeJS.ProcessEnv {
  return childEnv({ ETCDCTL_API: '3' });
}

/** etcdutl when there is one (etcd >= 3.5), else `etcdctl snapshot restore` (etcd 3.4); or the configured one. */
export async function findRestoreTool(configured: string | undefined): Promise<RestoreTool> {
  const path = await locateRestoreTool(configured);
  // What the tool says of itself is asked once per binary: a restore asks at preflight and again
  // when it restores, and each asking runs it once or twice. A replaced binary is asked again.
  const id = await stat(path).then(
    (st) => `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`,
    () => undefined,
  );
  const known = id ? probed.get(path) : undefined;
  if (known && known.id === id) return known.tool;
  const tool = probe(path);
  if (id) {
    probed.set(path, { id, tool });
    tool.catch(() => probed.delete(path));
  }
  return tool;
}

/**
 * Where the restore tool is, without running it: enough for `snapshot restore`, whose flags are the
 * same in both tools (a scratch etcd asks nothing more of it, and a tool that does not run fails there).
 */
export async function locateRestoreTool(configured: string | undefined): Promise<string> {
  if (configured) {
    if (await pathExists(configured, constants.X_OK)) return configured;
    throw new KburError('FAILED_PRECONDITION', `the configured etcd restore tool ${configured} is not an executable`, {
      hint: 'point it at etcdutl (etcd >= 3.5) or etcdctl (etcd 3.4), or remove it to use the one on PATH',
    });
  }
  const [etcdutl, etcdctl] = await Promise.all([findExecutable(['etcdutl']), findExecutable(['etcdctl'])]);
  const found = etcdutl ?? etcdctl;
  if (!found) {
    throw new KburError('FAILED_PRECONDITION', 'no etcd restore tool on this node: neither etcdutl nor etcdctl is on PATH', {
      hint: 'install etcdutl (etcd >= 3.5) or etcdctl (etcd 3.4) on the node, or set etcd.restoreTool in the agent config',
    });
  }
  return found;
}

const probed = new Map<string, { id: string; tool: Promise<RestoreTool> }>();

async function probe(path: string): Promise<RestoreTool> {
  const kind = path.endsWith('etcdutl') ? 'etcdutl' : 'etcdctl';
  const { stdout } = await runTool(path, ['version'], {
    env: toolEnv(),
    timeout: 10_000,
    failure: {
      code: 'FAILED_PRECONDITION',
      what: `${path} does not run`,
      hint: 'check the etcd restore tool on this node, or set etcd.restoreTool in the agent config',
    },
  });
  const version = /(?:etcdutl|etcdctl) version:\s*(\S+)/.exec(stdout)?.[1] ?? stdout.trim().split('\n')[0] ?? '';
  // Asked of the tool itself rather than guessed from its version (the flags came to 3.5 in a patch release).
  const help =
    kind === 'etcdutl'
      ? await runTool(path, ['snapshot', 'restore', '--help'], { env: toolEnv(), timeout: 10_000 }).catch(() => ({ stdout: '' }))
      : { stdout: '' };
  const canBumpRevision = /--bump-revision/.test(help.stdout) && /--mark-compacted/.test(help.stdout);
  return { kind, path, version, canBumpRevision };
}

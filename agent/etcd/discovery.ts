import { readFile, readdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { parse } from 'yaml';
import { KburError } from '../../shared/errors.js';
import { pathExists } from '../../shared/path-exists.js';
import { heldRestoreId } from '../../shared/restore-names.js';
import type { AgentConfig } from '../config.js';

/** How to reach and identify the local etcd member. */
export interface EtcdSettings {
  endpoint: string;
  name: string;
  dataDir: string;
  ca: string;
  cert: string;
  key: string;
  /** The static pod manifest it came from, when it came from one. */
  manifest: string | undefined;
  /** host:port pairs etcd listens on (client and peer): a stopped etcd leaves them free. */
  listens: { host: string; port: number }[];
}

/**
 * Fills what the agent config does not set from etcd's static pod manifest, as kubeadm writes it:
 * the endpoint from --listen-client-urls (or --advertise-client-urls), name, data dir and CA from
 * their flags; the client cert defaults to kubeadm's healthcheck-client pair.
 *
 * `undefined` when the node has no etcd manifest (nor a copy a restore holds) while the folder it
 * belongs in exists: a node reset by `kubeadm reset`, or a new machine, which a restore rebuilds.
 * `archived`, the text of the manifest in the node's backup archive, stands in for a missing one.
 */
export async function discoverEtcd(config: AgentConfig, archived?: string): Promise<EtcdSettings | undefined> {
  const e = config.etcd;
  const defaults = {
    cert: join(config.kubernetesDir, 'pki/etcd/healthcheck-client.crt'),
    key: join(config.kubernetesDir, 'pki/etcd/healthcheck-client.key'),
  };
  const complete = e.endpoints && e.name && e.dataDir && e.ca;
  if (complete && !e.manifest) {
    return {
      endpoint: e.endpoints![0]!,
      name: e.name!,
      dataDir: e.dataDir!,
      ca: e.ca!,
      cert: e.cert ?? defaults.cert,
      key: e.key ?? defaults.key,
      manifest: undefined,
      listens: hostPorts(e.endpoints!),
    };
  }
  const manifest = etcdManifestPath(config);
  const found = await findManifest(manifest);
  let flags: Map<string, string>;
  if (found) flags = await readEtcdFlags(found);
  else if (archived !== undefined) flags = parseEtcdFlags(archived, `${manifest} (from the backup's archive of this node)`);
  else if (await pathExists(dirname(manifest))) return undefined;
  else flags = await readEtcdFlags(manifest);
  const need = (value: string | undefined, flag: string, key: string): string => {
    if (value) return value;
    throw new KburError('INVALID_CONFIG', `${manifest} has no --${flag} in the etcd container's command`, {
      hint: `set etcd.${key} in the agent config`,
    });
  };
  return {
    endpoint: e.endpoints?.[0] ?? need(clientUrl(flags), 'listen-client-urls', 'endpoints'),
    name: e.name ?? need(flags.get('name'), 'name', 'name'),
    dataDir: e.dataDir ?? need(flags.get('data-dir'), 'data-dir', 'dataDir'),
    ca: e.ca ?? need(flags.get('trusted-ca-file'), 'trusted-ca-file', 'ca'),
    cert: e.cert ?? defaults.cert,
    key: e.key ?? defaults.key,
    manifest,
    listens: hostPorts(
      ['listen-client-urls', 'listen-peer-urls'].flatMap((f) => (flags.get(f) ?? '').split(',')).filter((u) => u.includes('://')),
    ),
  };
}

/** Where this node's etcd static pod manifest is (or will be put back). */
export function etcdManifestPath(config: AgentConfig): string {
  return config.etcd.manifest ?? join(config.kubernetesDir, 'manifests/etcd.yaml');
}

/** The manifest where it is, or the copy a restore holds; undefined when there is neither. */
export async function findManifest(manifest: string): Promise<string | undefined> {
  if (await pathExists(manifest)) return manifest;
  const kubernetesDir = dirname(dirname(manifest));
  const held = (await readdir(kubernetesDir).catch(() => [] as string[])).filter((d) => heldRestoreId(d) !== undefined).sort();
  for (const dir of held.reverse()) {
    const candidate = join(kubernetesDir, dir, basename(manifest));
    if (await pathExists(candidate)) return candidate;
  }
  return undefined;
}

function hostPorts(urls: string[]): { host: string; port: number }[] {
  return urls.map((u) => {
    const url = new URL(u.trim());
    return { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 2379) };
  });
}

/** --flag=value pairs of the container named etcd (or the first container). */
export async function readEtcdFlags(manifest: string): Promise<Map<string, string>> {
  let text: string;
  try {
    text = await readFile(manifest, 'utf8');
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new KburError(
      'INVALID_CONFIG',
      `etcd static pod manifest ${manifest} ${missing ? 'does not exist' : `cannot be read: ${(err as Error).message}`}`,
      {
        cause: err,
        hint: 'set etcd.manifest to the etcd static pod manifest, or set etcd.endpoints, etcd.name, etcd.dataDir and etcd.ca by hand',
      },
    );
  }
  return parseEtcdFlags(text, manifest);
}

/** The flags of a manifest's text; `source` names it in errors. */
export function parseEtcdFlags(text: string, source: string): Map<string, string> {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new KburError('INVALID_CONFIG', `etcd static pod manifest ${source} cannot be read: ${(err as Error).message}`, {
      cause: err,
      hint: 'set etcd.manifest to the etcd static pod manifest, or set etcd.endpoints, etcd.name, etcd.dataDir and etcd.ca by hand',
    });
  }
  const containers = (doc as { spec?: { containers?: { name?: string; command?: unknown[]; args?: unknown[] }[] } })?.spec?.containers;
  const container = containers?.find((c) => c.name === 'etcd') ?? containers?.[0];
  if (!container) {
    throw new KburError('INVALID_CONFIG', `${source} is not a pod manifest with an etcd container`, {
      hint: 'set etcd.manifest to the etcd static pod manifest',
    });
  }
  const flags = new Map<string, string>();
  for (const arg of [...(container.command ?? []), ...(container.args ?? [])]) {
    const m = typeof arg === 'string' ? /^--([^=]+)=(.*)$/.exec(arg) : null;
    if (m) flags.set(m[1]!, m[2]!);
  }
  return flags;
}

/** The first client URL usable from this node: a wildcard listen address is reached on loopback. */
function clientUrl(flags: Map<string, string>): string | undefined {
  const urls = [...(flags.get('listen-client-urls') ?? '').split(','), ...(flags.get('advertise-client-urls') ?? '').split(',')]
    .map((u) => u.trim())
    .filter(Boolean);
  const url = urls.find((u) => u.startsWith('https://')) ?? urls[0];
  return url?.replace('://0.0.0.0:', '://127.0.0.1:').replace('://[::]:', '://[::1]:');
}

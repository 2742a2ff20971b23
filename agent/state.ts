import type { AgentConfig } from './config.js';
import { discoverEtcd, etcdManifestPath, findManifest, type EtcdSettings } from './etcd/discovery.js';
import { LocalEtcd } from './etcd/member.js';

/**
 * One loaded config and what was built from it. A config reload builds a new state; the old one's
 * etcd client is closed once the calls that started with it are done.
 */
export class AgentState {
  private inFlight = 0;
  private retired = false;
  /** Members replaced by refreshEtcd: a call that started with one may still use it. */
  private readonly replaced: LocalEtcd[] = [];
  private refreshing: Promise<void> | undefined;

  private constructor(
    readonly config: AgentConfig,
    private member: LocalEtcd,
  ) {}

  static async build(config: AgentConfig): Promise<AgentState> {
    return new AgentState(config, await openMember(config));
  }

  /** The local etcd member; `missing` says why when the node has none (reset, or not built yet). */
  get etcd(): LocalEtcd {
    return this.member;
  }

  /**
   * A node reset under a running agent loses its etcd manifest, and a restore that rebuilds it
   * puts one back: the member is looked for again when it was missing or its manifest is gone.
   * A look that fails keeps what there was.
   */
  refreshEtcd(): Promise<void> {
    this.refreshing ??= this.lookAgain().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  private async lookAgain(): Promise<void> {
    const current = this.member;
    const manifest = current.settings.manifest;
    if (!current.missing && !(manifest && !(await findManifest(manifest)))) return;
    const next = await openMember(this.config).catch(() => undefined);
    if (!next) return;
    if (next.missing && current.missing) return next.close();
    this.replaced.push(current);
    this.member = next;
  }

  /** Marks a call as using this state; call the returned function when it is done. */
  acquire(): () => void {
    this.inFlight++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inFlight--;
      this.closeIfIdle();
    };
  }

  retire(): void {
    this.retired = true;
    this.closeIfIdle();
  }

  private closeIfIdle(): void {
    if (this.retired && this.inFlight === 0) for (const m of [this.member, ...this.replaced]) m.close();
  }
}

async function openMember(config: AgentConfig): Promise<LocalEtcd> {
  const settings = await discoverEtcd(config);
  if (settings) return LocalEtcd.open(settings);
  const manifest = etcdManifestPath(config);
  return LocalEtcd.missing(
    knownSettings(config, manifest),
    `no etcd member on this node: ${manifest} does not exist (a node reset by kubeadm reset, or not built yet); kbur restore rebuilds it from its archive in a backup`,
  );
}

/** What the config says of a member that is not there: where its manifest goes, what it sets by hand. */
export function knownSettings(config: AgentConfig, manifest: string): EtcdSettings {
  const e = config.etcd;
  return {
    endpoint: e.endpoints?.[0] ?? '',
    name: e.name ?? '',
    dataDir: e.dataDir ?? '',
    ca: e.ca ?? '',
    cert: e.cert ?? '',
    key: e.key ?? '',
    manifest,
    listens: [],
  };
}

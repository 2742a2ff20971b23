import type { AgentConfig } from './config.js';
import { discoverEtcd } from './etcd/discovery.js';
import { LocalEtcd } from './etcd/member.js';

/**
 * One loaded config and what was built from it. A config reload builds a new state; the old one's
 * etcd client is closed once the calls that started with it are done.
 */
export class AgentState {
  private inFlight = 0;
  private retired = false;

  private constructor(
    readonly config: AgentConfig,
    readonly etcd: LocalEtcd,
  ) {}

  static async build(config: AgentConfig): Promise<AgentState> {
    const etcd = await LocalEtcd.open(await discoverEtcd(config));
    return new AgentState(config, etcd);
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
    if (this.retired && this.inFlight === 0) this.etcd.close();
  }
}

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, exponentialBuckets } from 'prom-client';
import type { CertificateExpiry, EtcdMemberStatus } from '../proto/gen/kbur/v1/agent.js';
import { asKburError } from '../shared/errors.js';
import { KBUR_VERSION } from '../shared/version.js';
import type { AgentMethod } from './auth.js';
import { readCertificates } from './kubernetes/certificates.js';
import { listLocalSnapshots } from './local-snapshots.js';
import type { AgentState } from './state.js';

/** Certificates change when someone renews them: reread at most this often. */
const CERTIFICATES_MAX_AGE_MS = 60_000;

/**
 * The agent's Prometheus metrics, served on its health listener at /metrics. A scrape reads only
 * what is already in memory or on local disk: the etcd member's status is the one the readiness
 * poll last fetched (memberStatus), so a scrape never waits on etcd nor makes it walk its index.
 */
export class AgentMetrics {
  readonly registry = new Registry();
  private readonly calls: Counter<'method' | 'role' | 'result'>;
  private readonly durations: Histogram<'method' | 'result'>;
  private readonly inFlight: Gauge<'method'>;
  /** Bytes streamed since the last scrape, by method and direction: added per 32 KiB message, so kept cheap. */
  private readonly pendingBytes = new Map<AgentMethod, { sent: number; received: number }>();
  private member: { status: EtcdMemberStatus; at: number } | undefined;
  private certificates: { list: CertificateExpiry[]; at: number; kubernetesDir: string } | undefined;
  private readingCertificates: Promise<CertificateExpiry[]> | undefined;

  constructor(private readonly state: () => AgentState) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.calls = new Counter({
      name: 'kbur_agent_calls_total',
      help: 'Calls answered, by method, the role the caller was granted ("none" when refused before) and result ("ok" or the error code)',
      labelNames: ['method', 'role', 'result'],
      registers,
    });
    this.durations = new Histogram({
      name: 'kbur_agent_call_duration_seconds',
      help: 'How long calls took, from the request to the answer or the end of the stream',
      labelNames: ['method', 'result'],
      // 5 ms (node info) to ~20 min (a multi-GB snapshot or a restore step).
      buckets: exponentialBuckets(0.005, 4, 10),
      registers,
    });
    this.inFlight = new Gauge({ name: 'kbur_agent_calls_in_flight', help: 'Calls running now', labelNames: ['method'], registers });
    const pending = this.pendingBytes;
    new Counter({
      name: 'kbur_agent_stream_bytes_total',
      help: 'Data bytes streamed: sent (snapshots, archives, dumps) or received (staged snapshots, copies, restored archives and dumps)',
      labelNames: ['method', 'direction'],
      registers,
      collect() {
        for (const [method, n] of pending) {
          if (n.sent) this.inc({ method, direction: 'sent' }, n.sent);
          if (n.received) this.inc({ method, direction: 'received' }, n.received);
          n.sent = n.received = 0;
        }
      },
    });
    const gauge = (name: string, help: string, labelNames: string[], collect: (g: Gauge) => void | Promise<void>): void => {
      new Gauge({
        name,
        help,
        labelNames,
        registers,
        async collect() {
          this.reset();
          await collect(this);
        },
      });
    };
    const member = (name: string, help: string, value: (s: EtcdMemberStatus) => number): void =>
      gauge(name, help, ['node'], (g) => {
        const m = this.member;
        if (m?.status.reachable) g.set({ node: this.node() }, value(m.status));
      });
    gauge('kbur_agent_info', 'The agent: its node name and version (always 1)', ['node', 'version'], (g) =>
      g.set({ node: this.node(), version: KBUR_VERSION }, 1),
    );
    gauge('kbur_etcd_member_up', 'Whether the local etcd member answered its last status request (1) or not (0)', ['node'], (g) => {
      if (this.member) g.set({ node: this.node() }, this.member.status.reachable ? 1 : 0);
    });
    gauge('kbur_etcd_member_status_timestamp_seconds', 'When the local member status in these metrics was read', ['node'], (g) => {
      if (this.member) g.set({ node: this.node() }, this.member.at / 1000);
    });
    member('kbur_etcd_member_has_leader', 'Whether the local member knows a leader (1) or not (0)', (s) =>
      s.leaderId && s.leaderId !== '0' ? 1 : 0,
    );
    member('kbur_etcd_member_is_leader', 'Whether the local member is the leader (1) or not (0)', (s) => (s.isLeader ? 1 : 0));
    member('kbur_etcd_member_db_size_bytes', 'Size of the backend database, physically allocated', (s) => s.dbSize);
    member('kbur_etcd_member_db_size_in_use_bytes', 'Size of the backend database, logically in use', (s) => s.dbSizeInUse);
    member('kbur_etcd_member_revision', 'Revision of the local member', (s) => s.revision);
    member('kbur_etcd_member_raft_term', 'Raft term of the local member', (s) => s.raftTerm);
    member('kbur_etcd_member_raft_index', 'Raft index of the local member', (s) => s.raftIndex);
    gauge(
      'kbur_certificate_expiry_timestamp_seconds',
      "notAfter of each certificate under the node's pki/, embedded in its kubeconfigs, and of the agent's own TLS",
      ['node', 'file', 'subject'],
      async (g) => {
        for (const c of await this.currentCertificates()) g.set({ node: this.node(), file: c.file, subject: c.subject }, c.notAfterSeconds);
      },
    );
    gauge('kbur_local_snapshot_copies', 'Snapshot copies this node keeps for restores', ['node'], async (g) => {
      g.set({ node: this.node() }, (await this.snapshotCopies()).length);
    });
    gauge('kbur_local_snapshot_bytes', 'Bytes of each snapshot copy this node keeps', ['node', 'backup_id'], async (g) => {
      for (const c of await this.snapshotCopies()) g.set({ node: this.node(), backup_id: c.backupId }, c.size);
    });
  }

  /** A call is starting; the returned function records how it ended (the role once authorized). */
  callStarted(method: AgentMethod): (role: string | undefined, err?: unknown) => void {
    const started = process.hrtime.bigint();
    this.inFlight.inc({ method });
    let done = false;
    return (role, err) => {
      if (done) return;
      done = true;
      const result = err === undefined ? 'ok' : asKburError(err).code.toLowerCase();
      this.inFlight.dec({ method });
      this.calls.inc({ method, role: role ?? 'none', result });
      this.durations.observe({ method, result }, Number(process.hrtime.bigint() - started) / 1e9);
    };
  }

  /** Counts the data bytes of a streamed message (one whose kind is `data`). */
  streamed(method: AgentMethod, direction: 'sent' | 'received', message: unknown): void {
    const kind = (message as { kind?: { $case?: string; value?: unknown } } | undefined)?.kind;
    if (kind?.$case !== 'data' || !(kind.value instanceof Uint8Array)) return;
    let n = this.pendingBytes.get(method);
    if (!n) this.pendingBytes.set(method, (n = { sent: 0, received: 0 }));
    n[direction] += kind.value.length;
  }

  /** The local member's status, as the readiness poll just read it. */
  memberStatus(status: EtcdMemberStatus): void {
    this.member = { status, at: Date.now() };
  }

  /** Text for a scrape, and its content type. */
  async render(): Promise<{ contentType: string; text: string }> {
    return { contentType: this.registry.contentType, text: await this.registry.metrics() };
  }

  /**
   * The certificates as last read. A list older than a minute is still answered, and read again
   * meanwhile, so that no scrape waits for the files; only the first call (see main) and one after
   * the kubernetes dir changed (config reload) wait.
   */
  currentCertificates(): Promise<CertificateExpiry[]> {
    const config = this.state().config;
    const cached = this.certificates?.kubernetesDir === config.kubernetesDir ? this.certificates : undefined;
    if (cached && Date.now() - cached.at < CERTIFICATES_MAX_AGE_MS) return Promise.resolve(cached.list);
    if (!cached) return this.readCertificates();
    this.readCertificates().catch(() => undefined);
    return Promise.resolve(cached.list);
  }

  private readCertificates(): Promise<CertificateExpiry[]> {
    const config = this.state().config;
    this.readingCertificates ??= readCertificates(config.kubernetesDir, [config.tls.ca, config.tls.cert])
      .then((list) => {
        this.certificates = { list, at: Date.now(), kubernetesDir: config.kubernetesDir };
        return list;
      })
      .finally(() => (this.readingCertificates = undefined));
    return this.readingCertificates;
  }

  private snapshotCopies(): ReturnType<typeof listLocalSnapshots> {
    return listLocalSnapshots(this.state().config.stateDir).catch(() => []);
  }

  private node(): string {
    return this.state().config.node;
  }
}

import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import {
  Server,
  ServerCredentials,
  type ServerErrorResponse,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
} from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { AgentServiceServer, GetNodeInfoRequest } from '../proto/gen/kbur/v1/agent.js';
import { AgentService } from '../shared/agent-service.js';
import { startControlPlane, startEtcd, stopControlPlane } from './restore/control-plane.js';
import { restoreDump } from './dumps/restore.js';
import { profileNamed, runDumpMessages } from './dumps/run.js';
import { restoreKubernetesDir } from './restore/kubernetes-dir.js';
import { restoreMember, rollbackMember } from './restore/member.js';
import { RestoreLock } from './restore/exclusive.js';
import { prepareRestore } from './restore/prepare.js';
import { assertRestoreId } from './restore/record.js';
import { checkMemberRestore } from '../shared/etcd-membership.js';
import { stageSnapshot, verifyStaged } from './restore/stage.js';
import { KburError, asKburError } from '../shared/errors.js';
import { GRPC_CODE, META_CODE, META_HINT, Metadata, status, toMetadataText } from '../shared/grpc-status.js';
import type { Logger } from '../shared/log.js';
import type { TlsMaterial } from '../shared/tls.js';
import { peerVersion, versionMetadata, wireMismatch } from '../shared/wire.js';
import { authorize, authorizeField, type AgentMethod, type Caller } from './auth.js';
import type { AgentMetrics } from './metrics.js';
import type { AgentState } from './state.js';
import { snapshotMessages } from './etcd/snapshot.js';
import { archiveMessages } from './kubernetes/messages.js';
import { keepSnapshot } from './local-snapshots.js';
import type { UploadMessage } from './upload.js';
import { nodeInfo } from './node-info.js';
import { widenSessionWindows, widenStreamWindows } from './grpc-receive-window.js';

export const AGENT_SERVICE_NAME = 'kbur.v1.AgentService';

/**
 * Any error as a gRPC status, with kbur's code and hint in trailing metadata. The only such
 * mapping. Never throws: text in an error may come from a request, and is made safe first.
 */
export function toStatus(err: unknown): ServerErrorResponse {
  const e = asKburError(err);
  const metadata = new Metadata();
  metadata.set(META_CODE, e.code);
  if (e.hint) metadata.set(META_HINT, toMetadataText(capped(e.hint)));
  const details = capped(e.message);
  return Object.assign(new Error(details), { code: GRPC_CODE[e.code] ?? status.INTERNAL, details, metadata });
}

/**
 * Status text travels in HTTP/2 headers, which a client refuses past its limit (16 KiB by default)
 * by dropping the whole connection: text that echoes a request (a 100 KB id) is cut short.
 */
const MAX_STATUS_TEXT = 1024;
function capped(text: string): string {
  return text.length > MAX_STATUS_TEXT ? `${text.slice(0, MAX_STATUS_TEXT)}... (${text.length - MAX_STATUS_TEXT} more characters)` : text;
}

/**
 * gRPC wiring only: authorization, cancellation and error mapping around the node's operations.
 * `state()` is read per call, so a reloaded config applies to the next call.
 */
export class AgentServer {
  private readonly server = widenStreamWindows(new Server({ 'grpc.max_send_message_length': 8 << 20 }));
  readonly health = new HealthImplementation({ '': 'SERVING', [AGENT_SERVICE_NAME]: 'NOT_SERVING' });
  private readonly shutdown = new AbortController();
  private readonly restoreLock = new RestoreLock();

  constructor(
    private readonly state: () => AgentState,
    private readonly log: Logger,
    private readonly metrics?: AgentMetrics,
  ) {
    const impl: AgentServiceServer = {
      getNodeInfo: this.unary('GetNodeInfo', (s, req: GetNodeInfoRequest, caller) => {
        if (req.countKeys) authorizeField(caller, 'GetNodeInfo.countKeys');
        return nodeInfo(s.config.node, s.config.stateDir, s.etcd, {
          countKeys: req.countKeys,
          callerRole: caller.role,
          certificates: req.certificates && metrics ? () => metrics.currentCertificates() : undefined,
        });
      }),
      snapshotEtcd: this.serverStream('SnapshotEtcd', (s, signal) => snapshotMessages(s.etcd, signal)),
      archiveKubernetes: this.serverStream('ArchiveKubernetes', (s, signal) => archiveMessages(s.config.kubernetesDir, signal)),
      runDump: this.serverStream('RunDump', (s, signal, req) =>
        runDumpMessages(profileNamed(s.config.dumps, req.profile, s.config.node), signal),
      ),
      keepSnapshot: this.clientStream('KeepSnapshot', keepSnapshot),
      // It changes the node (a database, a file set): one restore at a time, as the etcd restore steps.
      restoreDump: this.restoreUpload('RestoreDump', restoreDump),
      prepareRestore: this.unary('PrepareRestore', prepareRestore),
      stageSnapshot: this.restoreUpload('StageSnapshot', stageSnapshot),
      verifyStagedSnapshot: this.unary('VerifyStagedSnapshot', (s, req) => verifyStaged(s, req.restoreId)),
      stopControlPlane: this.restoreStep('StopControlPlane', (s, req) => stopControlPlane(s, req.restoreId)),
      restoreEtcdMember: this.restoreStep('RestoreEtcdMember', (s, req) => {
        checkMemberRestore(req);
        return restoreMember(s, req);
      }),
      restoreKubernetesDir: this.restoreUpload('RestoreKubernetesDir', restoreKubernetesDir),
      startEtcd: this.restoreStep('StartEtcd', (s, req) => startEtcd(s, req.restoreId)),
      startControlPlane: this.restoreStep('StartControlPlane', (s, req) => startControlPlane(s, req.restoreId)),
      rollbackRestore: this.restoreStep('RollbackRestore', (s, req) => rollbackMember(s, req.restoreId)),
    };
    this.server.addService(AgentService, impl);
    this.health.addToServer(this.server);
  }

  /** Binds with mTLS only: a client without a certificate from our CA never completes the handshake. */
  async listen(address: string, tls: TlsMaterial): Promise<number> {
    const creds = ServerCredentials.createSsl(tls.ca, [{ cert_chain: tls.cert, private_key: tls.key }], true);
    return new Promise((resolve, reject) => {
      this.server.bindAsync(address, creds, (err, port) => {
        if (err) {
          reject(
            new KburError('UNAVAILABLE', `cannot listen on ${address}: ${err.message}`, {
              cause: err,
              hint: 'another process holds that address, or it is not an address of this machine; change listen in the agent config',
            }),
          );
        } else {
          widenSessionWindows(this.server);
          resolve(port);
        }
      });
    });
  }

  /** Ends streams in flight with UNAVAILABLE (never a silent truncation), then closes the server. */
  async close(graceMs = 10_000): Promise<void> {
    this.shutdown.abort();
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
  }

  private unary<Req, Res>(method: AgentMethod, run: (s: AgentState, req: Req, caller: Caller) => Promise<Res>) {
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void =>
      this.respond(method, call, callback, (s, caller) => run(s, call.request, caller));
  }

  /** A step that changes the node for one restore: its id is checked, and it runs under the restore lock. */
  private restoreStep<Req extends { restoreId: string }, Res>(method: AgentMethod, run: (s: AgentState, req: Req) => Promise<Res>) {
    return this.unary(method, (s, req: Req) => {
      assertRestoreId(req.restoreId);
      return this.restoreLock.run(req.restoreId, method, () => run(s, req), s.config.stateDir);
    });
  }

  /** An upload for one restore: under the restore lock from its header on (the step then reads the header as sent). */
  private restoreUpload<Req extends UploadMessage<{ restoreId: string }>, Res>(
    method: AgentMethod,
    run: (s: AgentState, messages: AsyncIterable<Req>, signal: AbortSignal) => Promise<Res>,
  ) {
    return this.clientStream(method, async (s, messages: AsyncIterable<Req>, signal) => {
      const rest = messages[Symbol.asyncIterator]();
      const first = await rest.next();
      let replayed = false;
      const all: AsyncIterable<Req> = {
        [Symbol.asyncIterator]: () => ({
          next: () => {
            if (replayed) return rest.next();
            replayed = true;
            return Promise.resolve(first);
          },
        }),
      };
      const header = !first.done && first.value.kind?.$case === 'header' ? first.value.kind.value : undefined;
      // Without a header the step itself says what is wrong.
      if (!header) return run(s, all, signal);
      assertRestoreId(header.restoreId);
      return this.restoreLock.run(header.restoreId, method, () => run(s, all, signal), s.config.stateDir);
    });
  }

  private clientStream<Req, Res>(
    method: AgentMethod,
    run: (s: AgentState, messages: AsyncIterable<Req>, signal: AbortSignal) => Promise<Res>,
  ) {
    return (call: ServerReadableStream<Req, Res>, callback: sendUnaryData<Res>): void => {
      const abort = new AbortController();
      call.once('cancelled', () => abort.abort(new KburError('CANCELLED', 'the client cancelled the call')));
      this.respond(method, call, callback, (s) => run(s, this.counted(method, call), abort.signal));
    };
  }

  /**
   * Every call: our versions in the answer's metadata, then the caller's role, then its wire
   * contract (shared/wire.ts), refused with both versions when it is not ours.
   */
  private admit(
    call: Pick<ServerUnaryCall<unknown, unknown>, 'getAuthContext' | 'metadata' | 'sendMetadata'>,
    method: AgentMethod,
    s: AgentState,
  ): Caller {
    call.sendMetadata(versionMetadata());
    const caller = authorize(call, method, s.config.clients);
    const mismatch = wireMismatch(peerVersion(call.metadata), `kbur-agent on ${s.config.node}`, `the caller (${caller.cn})`);
    if (mismatch) throw mismatch;
    return caller;
  }

  /** Authorizes, runs, answers once: the result, or the error as a status. Changes are logged at info. */
  private respond<Res>(
    method: AgentMethod,
    call: ServerUnaryCall<unknown, Res> | ServerReadableStream<unknown, Res>,
    callback: sendUnaryData<Res>,
    run: (s: AgentState, caller: Caller) => Promise<Res>,
  ): void {
    const s = this.state();
    const op = opId();
    const started = Date.now();
    const release = s.acquire();
    const changes = !READ_ONLY.has(method);
    const measured = this.metrics?.callStarted(method);
    let role: string | undefined;
    Promise.resolve()
      .then(async () => {
        const caller = this.admit(call, method, s);
        role = caller.role;
        this.log.log(changes ? 'info' : 'debug', 'call', { op, method, cn: caller.cn, role: caller.role });
        await s.refreshEtcd();
        return run(s, caller);
      })
      .then(
        (res) => {
          if (changes) this.log.info('call done', { op, method, ms: Date.now() - started, result: res });
          measured?.(role);
          callback(null, res);
        },
        (err: unknown) => {
          this.log.warn('call failed', { op, method, error: asKburError(err).message, ms: Date.now() - started });
          measured?.(role, err);
          callback(toStatus(err));
        },
      )
      .catch((err: unknown) => this.answerFailed(op, method, err))
      .finally(release);
  }

  /** An answer that could not be given is logged: no call, however crafted, takes the agent down. */
  private answerFailed(op: string, method: AgentMethod, err: unknown): void {
    this.log.error('answer failed', { op, method, error: asKburError(err).message });
  }

  /** The client's messages as they arrive, their data bytes counted. */
  private counted<Req>(method: AgentMethod, messages: AsyncIterable<Req>): AsyncIterable<Req> {
    const metrics = this.metrics;
    if (!metrics) return messages;
    return (async function* () {
      for await (const msg of messages) {
        metrics.streamed(method, 'received', msg);
        yield msg;
      }
    })();
  }

  private serverStream<Req, Res>(method: AgentMethod, run: (s: AgentState, signal: AbortSignal, req: Req) => AsyncIterable<Res>) {
    return (call: ServerWritableStream<Req, Res>): void => {
      const s = this.state();
      const op = opId();
      const started = Date.now();
      const release = s.acquire();
      const measured = this.metrics?.callStarted(method);
      let role: string | undefined;
      const abort = new AbortController();
      const onCancel = (): void => abort.abort(new KburError('CANCELLED', 'the client cancelled the call'));
      const onShutdown = (): void =>
        abort.abort(new KburError('UNAVAILABLE', 'the agent is shutting down', { hint: 'retry when it is back' }));
      call.once('cancelled', onCancel);
      this.shutdown.signal.addEventListener('abort', onShutdown, { once: true });

      const stream = async (): Promise<void> => {
        const caller = this.admit(call, method, s);
        role = caller.role;
        this.log.info('stream started', { op, method, cn: caller.cn, role: caller.role });
        await s.refreshEtcd();
        for await (const msg of run(s, abort.signal, call.request)) {
          abort.signal.throwIfAborted();
          this.metrics?.streamed(method, 'sent', msg);
          // The write callback fires when HTTP/2 took the bytes: this is the backpressure.
          if (!call.write(msg)) await once(call, 'drain', { signal: abort.signal });
        }
        abort.signal.throwIfAborted();
        call.end();
      };
      stream()
        .then(
          () => {
            this.log.info('stream finished', { op, method, ms: Date.now() - started });
            measured?.(role);
          },
          (err: unknown) => {
            const reason = abort.signal.aborted ? abort.signal.reason : err;
            measured?.(role, reason);
            this.log.warn('stream failed', { op, method, error: asKburError(reason).message, ms: Date.now() - started });
            if (!call.cancelled) call.emit('error', toStatus(reason));
          },
        )
        .catch((err: unknown) => this.answerFailed(op, method, err))
        .finally(() => {
          call.off('cancelled', onCancel);
          this.shutdown.signal.removeEventListener('abort', onShutdown);
          release();
        });
    };
  }
}

const READ_ONLY = new Set<AgentMethod>(['GetNodeInfo', 'SnapshotEtcd', 'ArchiveKubernetes', 'PrepareRestore', 'VerifyStagedSnapshot']);

function opId(): string {
  return randomBytes(4).toString('hex');
}

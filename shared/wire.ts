/**
 * The version handshake between kbur and kbur-agent. Every call carries the caller's kbur version
 * and WIRE_VERSION in its metadata, every answer the agent's: the agent refuses a call of another
 * wire version, and the coordinator refuses an agent of another, at the first call, both versions
 * in the error. Releases that keep the contract (same WIRE_VERSION) work together whatever their
 * kbur versions.
 */
import { InterceptingCall, Metadata, status, type Interceptor } from '@grpc/grpc-js';
import { KburError } from './errors.js';
import { META_CODE, META_HINT } from './grpc-status.js';
import { KBUR_VERSION } from './version.js';

/**
 * Bump on any change to proto/kbur/v1/agent.proto, or to what a field means, that the other side
 * of an older release would misread (a new required field, a changed stream order). Adding an
 * optional field that an older side may ignore does not need a bump.
 */
export const WIRE_VERSION = 1;

export const META_WIRE_VERSION = 'kbur-wire-version';
export const META_KBUR_VERSION = 'kbur-version';

export interface PeerVersion {
  kbur: string;
  wire: number | undefined;
}

/** Our versions, as metadata for a call or an answer. */
export function versionMetadata(md: Metadata = new Metadata()): Metadata {
  md.set(META_WIRE_VERSION, String(WIRE_VERSION));
  md.set(META_KBUR_VERSION, KBUR_VERSION);
  return md;
}

/** The versions the other side sent; a side older than the handshake sends none. */
export function peerVersion(md: Metadata): PeerVersion {
  const wire = md.get(META_WIRE_VERSION)[0];
  const kbur = md.get(META_KBUR_VERSION)[0];
  const n = typeof wire === 'string' && /^\d+$/.test(wire) ? Number(wire) : undefined;
  return { kbur: typeof kbur === 'string' ? kbur : '(a release without the version handshake)', wire: n };
}

/**
 * FAILED_PRECONDITION naming both sides and their versions when the peer speaks another wire
 * contract; undefined when it matches. `self` and `peer` name the two sides ("kbur-agent on node-1").
 */
export function wireMismatch(peerSent: PeerVersion, self: string, peer: string): KburError | undefined {
  if (peerSent.wire === WIRE_VERSION) return undefined;
  const older = peerSent.wire === undefined || peerSent.wire < WIRE_VERSION ? peer : self;
  return new KburError(
    'FAILED_PRECONDITION',
    `${self} is kbur ${KBUR_VERSION} (wire contract ${WIRE_VERSION}) and ${peer} is kbur ${peerSent.kbur} ` +
      `(wire contract ${peerSent.wire ?? 'none'}): they do not speak the same contract`,
    { hint: `upgrade ${older} so that kbur and every kbur-agent run releases of the same wire contract` },
  );
}

/**
 * The coordinator's side, for a channel to one agent: sends our versions on every call, and checks
 * the agent's on the first answer that carries them. A mismatch cancels that call, drops what it
 * received and ends it with FAILED_PRECONDITION, the two versions and the hint in kbur's metadata.
 */
export function wireCheckInterceptor(agentName: string): Interceptor {
  let checked = false;
  return (options, nextCall) => {
    let problem: KburError | undefined;
    let finishMetadata: (() => void) | undefined;
    const call: InterceptingCall = new InterceptingCall(nextCall(options), {
      start(metadata, _listener, next) {
        next(versionMetadata(metadata), {
          onReceiveMetadata(md, nextMd) {
            if (!checked) {
              problem = wireMismatch(peerVersion(md), 'kbur (the coordinator)', `kbur-agent on ${agentName}`);
              if (problem) {
                // Cancelled before any message is read; the metadata goes on with the status below
                // (grpc-js holds a status back until the metadata went through).
                finishMetadata = () => nextMd(md);
                call.cancelWithStatus(status.FAILED_PRECONDITION, problem.message);
                return;
              }
              checked = true;
            }
            nextMd(md);
          },
          onReceiveStatus(st, nextStatus) {
            if (!problem) return nextStatus(st);
            finishMetadata?.();
            const md = new Metadata();
            md.set(META_CODE, problem.code);
            if (problem.hint) md.set(META_HINT, problem.hint);
            nextStatus({ ...st, code: status.FAILED_PRECONDITION, details: problem.message, metadata: md });
          },
        });
      },
    });
    return call;
  };
}

import type { ServerUnaryCall } from '@grpc/grpc-js';
import { KburError } from '../shared/errors.js';
import type { Role } from './config.js';

/** Which roles may call each method of kbur.v1.AgentService. */
export const METHOD_ROLES = {
  GetNodeInfo: ['admin', 'operator', 'monitor'],
  SnapshotEtcd: ['admin', 'operator'],
  ArchiveKubernetes: ['admin', 'operator'],
  KeepSnapshot: ['admin', 'operator'],
  RunDump: ['admin', 'operator'],
  RestoreDump: ['admin'],
  PrepareRestore: ['admin'],
  StageSnapshot: ['admin'],
  VerifyStagedSnapshot: ['admin'],
  StopControlPlane: ['admin'],
  RestoreEtcdMember: ['admin'],
  RestoreKubernetesDir: ['admin'],
  StartEtcd: ['admin'],
  StartControlPlane: ['admin'],
  RollbackRestore: ['admin'],
} as const satisfies Record<string, readonly Role[]>;

export type AgentMethod = keyof typeof METHOD_ROLES;

/** Request fields that cost more than the call itself, and the roles that may set them. */
export const FIELD_ROLES = {
  // etcd walks its whole index to count the keys: a restore's verify step needs it, nothing else.
  'GetNodeInfo.countKeys': ['admin'],
} as const satisfies Record<string, readonly Role[]>;

export interface Caller {
  cn: string;
  role: Role;
}

/**
 * The caller's role from the CN of its client certificate (TLS already proved the certificate
 * chains to our CA). An unknown CN, or a role the method does not allow, is PERMISSION_DENIED.
 */
export function authorize(
  call: Pick<ServerUnaryCall<unknown, unknown>, 'getAuthContext'>,
  method: AgentMethod,
  clients: Record<string, Role>,
): Caller {
  const subjectCn = call.getAuthContext()?.sslPeerCertificate?.subject?.CN;
  // A certificate with several CNs names no one in particular.
  const cn = typeof subjectCn === 'string' ? subjectCn : undefined;
  if (!cn) {
    throw new KburError('PERMISSION_DENIED', 'the client certificate has no single CN: the agent maps exactly one CN to a role', {
      hint: "connect with a client certificate issued by the agent's CA",
    });
  }
  const role = clients[cn];
  if (!role) {
    throw new KburError('PERMISSION_DENIED', `client certificate CN "${cn}" is not listed in the agent's clients`, {
      hint: `add "${cn}: <admin|operator|monitor>" under clients in the agent config`,
    });
  }
  const allowed: readonly Role[] = METHOD_ROLES[method];
  if (!allowed.includes(role)) {
    throw new KburError('PERMISSION_DENIED', `${method} needs role ${allowed.join(' or ')}; client "${cn}" has role ${role}`, {
      hint: 'use a client certificate whose CN maps to a role that may do this',
    });
  }
  return { cn, role };
}

/** PERMISSION_DENIED when the caller's role may call the method but not set this field of its request. */
export function authorizeField(caller: Caller, field: keyof typeof FIELD_ROLES): void {
  const allowed: readonly Role[] = FIELD_ROLES[field];
  if (!allowed.includes(caller.role)) {
    throw new KburError('PERMISSION_DENIED', `${field} needs role ${allowed.join(' or ')}; client "${caller.cn}" has role ${caller.role}`, {
      hint: `ask without ${field.split('.')[1]}, or use a client certificate whose CN maps to ${allowed.join(' or ')}`,
    });
  }
}

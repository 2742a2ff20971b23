/**
 * One error type for kbur. The code says what kind of failure it is (and maps to a gRPC status and
 * an exit code in exactly one place each); `retryable` is read by retry logic, never message text;
 * `hint` tells the operator what to do next.
 */
export type ErrorCode =
  | 'INVALID_CONFIG'
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'FAILED_PRECONDITION'
  | 'PERMISSION_DENIED'
  | 'UNAVAILABLE'
  | 'DATA_LOSS'
  | 'CANCELLED'
  | 'INTERNAL'
  /** Another kbur operation holds the repository lock. */
  | 'LOCKED'
  /** The repository lock's holder is gone: only `kbur unlock --force` breaks it. */
  | 'LOCK_STALE'
  /** The repository's disk is full (ENOSPC, EDQUOT). */
  | 'RESOURCE_EXHAUSTED';

const BRAND = Symbol.for('kbur.KburError');

export interface KburErrorOptions {
  cause?: unknown;
  retryable?: boolean;
  hint?: string;
}

export class KburError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: KburErrorOptions = {}) {
    super(message, { cause: options.cause });
    this.name = 'KburError';
    this.code = code;
    this.retryable = options.retryable ?? code === 'UNAVAILABLE';
    this.hint = options.hint;
    Object.defineProperty(this, BRAND, { value: true });
  }

  /** True for a KburError even when two copies of this module are loaded. */
  static is(err: unknown): err is KburError {
    return typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[BRAND] === true;
  }

  static hasCode(err: unknown, code: ErrorCode): err is KburError {
    return KburError.is(err) && err.code === code;
  }
}

/** Any thrown value as a KburError; foreign errors become INTERNAL with the original as cause. */
export function asKburError(err: unknown): KburError {
  if (KburError.is(err)) return err;
  if (isAbortError(err)) return new KburError('CANCELLED', 'the operation was cancelled', { cause: err });
  return new KburError('INTERNAL', errorMessage(err), { cause: err });
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function isAbortError(err: unknown): boolean {
  return err instanceof Error && err.name === 'AbortError';
}

import { Metadata, status } from '@grpc/grpc-js';
import type { ErrorCode } from './errors.js';

/** The one table between kbur error codes and gRPC status codes, read in both directions. */
export const GRPC_CODE: Record<ErrorCode, status> = {
  INVALID_CONFIG: status.FAILED_PRECONDITION,
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  NOT_FOUND: status.NOT_FOUND,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  UNAVAILABLE: status.UNAVAILABLE,
  DATA_LOSS: status.DATA_LOSS,
  CANCELLED: status.CANCELLED,
  INTERNAL: status.INTERNAL,
  LOCKED: status.ABORTED,
  LOCK_STALE: status.ABORTED,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
};

/** Trailing metadata keys that carry what a gRPC status cannot: kbur's own code and the hint. */
export const META_CODE = 'kbur-code';
export const META_HINT = 'kbur-hint';

export { Metadata, status };

/**
 * Text as a legal gRPC metadata value (printable ASCII only: grpc-js throws on anything else, and
 * an error's hint can carry what a request sent). Percent-encoded as gRPC encodes grpc-message,
 * `%` included, so that fromMetadataText gives back exactly the text.
 */
export function toMetadataText(text: string): string {
  let out = '';
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    if (c >= 0x20 && c <= 0x7e && ch !== '%') out += ch;
    else for (const b of Buffer.from(ch, 'utf8')) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

export function fromMetadataText(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

import { isAbsolute } from 'node:path';
import { z } from 'zod';

// The shapes of values that several configs and requests take, checked the same way everywhere.

/** host:port, an IPv6 host in brackets: [fd00::1]:7443. */
export const HOST_PORT = /^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/;

/** A host:port; the error says whose it is (`of`, e.g. "of a kbur-agent") and gives `example`. */
export function hostPortSchema(example: string, of?: string): z.ZodString {
  return z.string().regex(HOST_PORT, { message: `expected host:port${of ? ` ${of}` : ''}, e.g. ${example}` });
}

/** A path from `/`: a config's paths do not depend on the directory the process started in. */
export const absPathSchema = z.string().refine(isAbsolute, { message: 'expected an absolute path' });

/** Where a kbur-agent listens, as kbur.yaml and kbur init take it. */
export const agentAddressSchema = hostPortSchema('10.0.0.11:7443', 'of a kbur-agent');

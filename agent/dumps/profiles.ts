import { isAbsolute } from 'node:path';
import { z } from 'zod';
import { durationSeconds } from '../../shared/duration.js';
import { nameSchema } from '../../shared/manifest.js';
import { absPathSchema } from '../../shared/schemas.js';

const dbName = nameSchema('database');

/** "90s", "30m", "1h" or a number of seconds; default one hour. */
const duration = durationSeconds.refine((v) => v > 0, { message: 'expected a duration above 0' }).default(3600);

const common = { timeout: duration, tool: absPathSchema.optional() };

export const dumpProfileSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('mariadb'),
    /** [client] options file with user and password (and socket/host); passed as --defaults-extra-file. */
    defaultsFile: absPathSchema,
    socket: absPathSchema.optional(),
    host: z.string().optional(),
    port: z.number().int().positive().optional(),
    /** Default: every database but the server's own schemas. */
    databases: z.array(dbName).min(1).optional(),
    ...common,
  }),
  z.strictObject({
    type: z.literal('postgres'),
    /** A host name, or the socket directory. */
    host: z.string().min(1),
    port: z.number().int().positive().default(5432),
    user: z.string().min(1),
    /** A PGPASSFILE with the user's password. */
    passFile: absPathSchema,
    databases: z.array(dbName).min(1),
    /** Also pg_dumpall --globals-only (roles, tablespaces). */
    globals: z.boolean().default(false),
    ...common,
  }),
  z.strictObject({
    type: z.literal('mongodb'),
    /** mongodump/mongorestore --config file holding the URI with its password. */
    configFile: absPathSchema,
    db: dbName.optional(),
    ...common,
  }),
  z.strictObject({
    type: z.literal('files'),
    paths: z.array(absPathSchema).min(1),
    ...common,
  }),
  z.strictObject({
    type: z.literal('command'),
    /** Writes the dump to stdout. */
    dump: z
      .array(z.string())
      .min(1)
      .refine((a) => isAbsolute(a[0]!), { message: 'expected the command as an absolute path first' }),
    /** Reads a dump on stdin. */
    restore: z
      .array(z.string())
      .min(1)
      .refine((a) => isAbsolute(a[0]!), { message: 'expected the command as an absolute path first' }),
    /** Environment for both commands (PATH is always set). */
    env: z.record(z.string(), z.string()).default({}),
    ...common,
  }),
]);

export type DumpProfile = z.output<typeof dumpProfileSchema>;

import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { KburError } from './errors.js';

/**
 * manifest.json: written last, never rewritten. A backup without one is not complete.
 * Bump MANIFEST_SCHEMA_VERSION on any change that an older kbur could misread.
 */
export const MANIFEST_SCHEMA_VERSION = 1;

export const BACKUP_PHASES = ['Completed', 'PartiallyFailed', 'Failed'] as const;
export type BackupPhase = (typeof BACKUP_PHASES)[number];

const member = z.object({
  id: z.string(),
  name: z.string(),
  peerUrls: z.array(z.string()),
  clientUrls: z.array(z.string()),
  isLearner: z.boolean(),
});

const artifact = z.object({
  kind: z.enum(['etcd-snapshot', 'kubernetes-dir', 'dump']),
  /** Node the artifact came from. */
  node: z.string(),
  /** Relative to the backup's folder, '/'-separated. */
  path: z.string(),
  /** Size and sha256 of the bytes stored in the repository (after compression and encryption). */
  size: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  /**
   * Of the stored content, under any encryption. A dump's is its agent's (gzip unless the format
   * already is), and its agent undoes it; the snapshot's and node archives' is kbur.yaml's
   * `compression`, undone by kbur before the bytes go to an agent.
   */
  compression: z.enum(['none', 'gzip', 'zstd']),
  encryption: z.enum(['none', 'age']),
  /** age only: the public recipients it was encrypted to (never an identity). */
  recipients: z.array(z.string()).optional(),
  /** When kbur compressed or encrypted it: the bytes before that, as the agent sent them and gets them back. */
  plaintext: z.object({ size: z.number().int().nonnegative(), sha256: z.string().regex(/^[0-9a-f]{64}$/) }).optional(),
  /** kubernetes-dir only: files holding a kubeadm ClusterConfiguration, and how many entries. */
  kubeadmConfigFiles: z.array(z.string()).optional(),
  fileCount: z.number().int().nonnegative().optional(),
  /** dump only: which profile and part, how it was made, and what the tool said. */
  dump: z
    .object({
      profile: z.string(),
      part: z.string(),
      type: z.string(),
      tool: z.string(),
      toolVersion: z.string(),
      command: z.string(),
      rawBytes: z.number().int().nonnegative(),
      durationMs: z.number().int().nonnegative(),
      stderrTail: z.string(),
    })
    .optional(),
});

export const manifestSchema = z.object({
  schemaVersion: z.literal(MANIFEST_SCHEMA_VERSION),
  kburVersion: z.string(),
  cluster: z.string(),
  id: z.string(),
  startedAt: z.string(),
  finishedAt: z.string(),
  phase: z.enum(BACKUP_PHASES),
  /** What failed, by part ('etcd', 'node/<name>', 'dump/<node>/<profile>'), when phase is not Completed. */
  failures: z.array(z.object({ part: z.string(), message: z.string() })),
  etcd: z
    .object({
      node: z.string(),
      memberId: z.string(),
      memberName: z.string(),
      endpoint: z.string(),
      version: z.string(),
      clusterId: z.string(),
      revision: z.number().int(),
      keyCount: z.number().int(),
      dbSize: z.number().int(),
      members: z.array(member),
      /** Members tried before the one that gave the snapshot, and why they failed. */
      fallbacks: z.array(z.object({ node: z.string(), error: z.string() })),
    })
    .nullable(),
  artifacts: z.array(artifact),
});

export type Manifest = z.infer<typeof manifestSchema>;

/**
 * How a manifest of an older schema becomes the next one: MANIFEST_UPGRADES[n] takes a schema-n
 * manifest to schema n+1. Adding a schema version means adding its step here and a backup set of
 * the version before it under test/fixtures/backup-sets/, which the upgrade test reads with today's kbur.
 */
const MANIFEST_UPGRADES: Record<number, (old: Record<string, unknown>) => Record<string, unknown>> = {};

/**
 * A manifest of any schema this kbur knows, brought to the current one and validated. A newer
 * schema is refused (this kbur would misread it); a damaged one is DATA_LOSS.
 */
export function parseManifest(value: unknown, file: string): Manifest {
  const version = (value as { schemaVersion?: unknown } | null)?.schemaVersion;
  if (typeof version === 'number' && Number.isInteger(version) && version > MANIFEST_SCHEMA_VERSION) {
    const by = (value as { kburVersion?: unknown }).kburVersion;
    throw new KburError(
      'FAILED_PRECONDITION',
      `${file} has manifest schema ${version} (written by kbur ${String(by)}); this kbur reads schemas up to ${MANIFEST_SCHEMA_VERSION}`,
      { hint: `use kbur ${String(by)} or newer for this backup` },
    );
  }
  let current = value as Record<string, unknown>;
  if (typeof version === 'number' && Number.isInteger(version) && version >= 1) {
    for (let v = version; v < MANIFEST_SCHEMA_VERSION; v++) {
      const step = MANIFEST_UPGRADES[v];
      if (!step) throw new KburError('INTERNAL', `no upgrade of manifest schema ${v} to ${v + 1}`);
      current = step(current);
    }
  }
  const parsed = manifestSchema.safeParse(current);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw new KburError('DATA_LOSS', `${file} is not a valid kbur manifest: ${first?.path.join('.')}: ${first?.message}`, {
      hint: 'the manifest was damaged or written by an incompatible kbur; do not restore from this backup',
    });
  }
  return parsed.data;
}
export type Artifact = z.infer<typeof artifact>;
export type EtcdMemberInfo = z.infer<typeof member>;

/** What `kbur verify --deep` read from the snapshot in a scratch etcd, and how it compares with the manifest. */
export const deepVerificationSchema = z.object({
  verifiedAt: z.string(),
  ok: z.boolean(),
  problems: z.array(z.string()),
  revision: z.number().int().optional(),
  keyCount: z.number().int().optional(),
  byResource: z.record(z.string(), z.number().int()).optional(),
  byNamespace: z.record(z.string(), z.number().int()).optional(),
  namespaces: z.number().int().optional(),
  durationMs: z.number().int().optional(),
});
export type DeepVerification = z.infer<typeof deepVerificationSchema>;

/** Results of `kbur verify`, kept beside the manifest (verify.json) and replaced on each run. */
export const verificationSchema = z.object({
  verifiedAt: z.string(),
  kburVersion: z.string(),
  ok: z.boolean(),
  artifacts: z.array(
    z.object({
      path: z.string(),
      ok: z.boolean(),
      size: z.number().int().optional(),
      sha256: z.string().optional(),
      /** Checked too: the decrypted (and decompressed) bytes, when an identity was given. */
      plaintext: z.object({ size: z.number().int(), sha256: z.string() }).optional(),
      error: z.string().optional(),
    }),
  ),
  /** The last deep verification (kept by a later plain `kbur verify`, which has its own verifiedAt). */
  deep: deepVerificationSchema.optional(),
  /** The manifest's signature as checked: 'unsigned', 'good (key ...)', or what is wrong with it. */
  signature: z.string().optional(),
});
export type Verification = z.infer<typeof verificationSchema>;

/**
 * Backup ids sort by time, to the millisecond: 20261125T234512Z-07b3 is 23:45:12.123 UTC (the
 * suffix: the milliseconds as 3 hex digits, then a random one, so that two backups started in the
 * same millisecond most likely differ; if not, the second cannot create its folder and fails
 * before it writes anything). Restores and dump restores take ids the same way.
 */
export function newBackupId(now: Date = new Date(), random: () => string = randomHexDigit): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
  return `${stamp}-${now.getUTCMilliseconds().toString(16).padStart(3, '0')}${random()}`;
}

export const BACKUP_ID = /^\d{8}T\d{6}Z-[0-9a-f]{4}$/;

/** `id` when it has the form of a backup id (restore ids have it too); INVALID_ARGUMENT naming `what` otherwise. */
export function checkId(id: string, what: 'backup' | 'restore', hint?: string): string {
  if (BACKUP_ID.test(id)) return id;
  throw new KburError('INVALID_ARGUMENT', `"${id}" is not a ${what} id (expected e.g. 20261125T234512Z-07b3)`, { hint });
}

/**
 * Names that become a path component or a tool's argument (profiles, nodes, clusters, databases,
 * dump parts, file extensions), on either side, whether they come from a config, a request, an
 * agent or a database server. Never empty, never starting with `-` (an option) or `.`, never a `/`
 * or a control character: one check, here.
 */
export const NAME_PATTERNS = {
  /** Profiles, nodes, clusters. */
  profile: /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/,
  node: /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/,
  /** etcd members: kubeadm names them after their node's hostname, up to a full DNS name. */
  member: /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/,
  cluster: /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/,
  /** MariaDB, PostgreSQL and MongoDB databases kbur dumps, and the parts named after them. */
  database: /^[A-Za-z0-9_$][A-Za-z0-9_$-]{0,63}$/,
  part: /^[A-Za-z0-9_$][A-Za-z0-9_$-]{0,63}$/,
  extension: /^[a-z0-9]{1,16}$/,
} as const;

export type NameKind = keyof typeof NAME_PATTERNS;

export const NAME_RULES: Record<NameKind, string> = {
  profile: 'letters, digits, ., _ or -, starting with a letter or digit',
  node: 'letters, digits, ., _ or -, starting with a letter or digit',
  member: 'at most 253 letters, digits, ., _ or -, starting with a letter or digit',
  cluster: 'letters, digits, ., _ or -, starting with a letter or digit',
  database: 'at most 64 letters, digits, _, $ or -, not starting with -',
  part: 'at most 64 letters, digits, _, $ or -, not starting with -',
  extension: 'lowercase letters and digits',
};

/** `value` when it is a safe `kind` name; INVALID_ARGUMENT naming the value (escaped) and the rule otherwise. */
export function checkName(kind: NameKind, value: string, hint?: string): string {
  if (NAME_PATTERNS[kind].test(value)) return value;
  throw new KburError('INVALID_ARGUMENT', `${JSON.stringify(value).slice(0, 200)} is not a ${kind} name (expected ${NAME_RULES[kind]})`, {
    hint,
  });
}

/** The same check for a config schema. */
export function nameSchema(kind: NameKind): z.ZodString {
  return z.string().regex(NAME_PATTERNS[kind], { message: `expected a ${kind} name of ${NAME_RULES[kind]}` });
}

function randomHexDigit(): string {
  return (randomBytes(1)[0]! & 15).toString(16);
}

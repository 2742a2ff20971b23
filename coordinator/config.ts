import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { loadConfigFile } from '../shared/config-file.js';
import { nameSchema } from '../shared/manifest.js';
import { agentAddressSchema } from '../shared/schemas.js';

export const DEFAULT_COORDINATOR_CONFIG = './kbur.yaml';

const keep = z.number().int().nonnegative().default(0);

/**
 * GFS retention: the newest `keepLast` Completed backups, and the newest one of each of the last
 * `hourly` hours, `daily` days, `weekly` ISO weeks and `monthly` months that have one, counted in
 * `timeZone` (an IANA name; default UTC).
 */
export const retentionSchema = z
  .strictObject({
    keepLast: keep,
    hourly: keep,
    daily: keep,
    weekly: keep,
    monthly: keep,
    timeZone: z
      .string()
      .refine(isTimeZone, {
        error: (iss) => `"${String(iss.input)}" is not a time zone: expected an IANA name such as UTC or Europe/Berlin`,
      })
      .default('UTC'),
  })
  .refine((r) => r.keepLast + r.hourly + r.daily + r.weekly + r.monthly > 0, {
    message: 'expected at least one of keepLast, hourly, daily, weekly, monthly above 0 (else every backup but the last verified one goes)',
  });
export type RetentionPolicy = z.output<typeof retentionSchema>;

function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}
/** An S3-compatible bucket (AWS S3, MinIO, Ceph RGW); see README "S3 repository". */
const s3Repository = z.strictObject({
  type: z.literal('s3'),
  bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, {
    message: 'expected an S3 bucket name: 3-63 lowercase letters, digits, "." or "-", starting and ending with a letter or digit',
  }),
  /** Keys start with it: <prefix>/<cluster>/backups/... Default: the bucket's root. */
  prefix: z
    .string()
    .default('')
    .refine((p) => /^[A-Za-z0-9._/-]*$/.test(p) && p.split('/').every((seg) => seg !== '.' && seg !== '..'), {
      message: 'expected a key prefix such as "kbur" or "backups/prod": letters, digits, ".", "_", "-" and "/", no "." or ".." segment',
    })
    .transform((p) => p.replace(/^\/+|\/+$/g, '')),
  /** http(s)://host[:port] of an S3-compatible server; default: AWS S3 of the region. */
  endpoint: z.url({ protocol: /^https?$/, message: 'expected an http:// or https:// URL, e.g. https://minio.example:9000' }).optional(),
  /** Default: $AWS_REGION, else us-east-1 (what MinIO and Ceph RGW accept). */
  region: z
    .string()
    .regex(/^[a-z0-9-]{1,40}$/, { message: 'expected a region name such as eu-west-1' })
    .optional(),
  /** http://endpoint/bucket/key instead of http://bucket.endpoint/key: MinIO, Ceph RGW. */
  forcePathStyle: z.boolean().default(false),
  /** An AWS shared-credentials file ([default] aws_access_key_id, aws_secret_access_key); default: the AWS chain. */
  credentialsFile: z.string().min(1).optional(),
});

/** An age public key (X25519 age1..., or a post-quantum age1pq1...), as age-keygen prints it. */
const ageRecipient = z.string().regex(/^age1(?:pq1|tag1|tagpq1)?[02-9ac-hj-np-z]{50,}$/, {
  message: 'expected an age public key (age1... as age-keygen -y prints it), never the identity',
});

const schema = z
  .strictObject({
    /** Name of the cluster; backups live under <repository>/<cluster>/. */
    cluster: nameSchema('cluster'),
    /** The coordinator's client certificate; its CN must map to a role in every agent's clients. */
    tls: z.strictObject({ ca: z.string().min(1), cert: z.string().min(1), key: z.string().min(1) }),
    nodes: z
      .array(z.strictObject({ name: nameSchema('node'), agent: agentAddressSchema }))
      .min(1, { message: 'expected at least one node' })
      .refine((nodes) => new Set(nodes.map((n) => n.name)).size === nodes.length, { message: 'node names must be unique' }),
    repository: z.discriminatedUnion('type', [z.strictObject({ type: z.literal('local'), path: z.string().min(1) }), s3Repository]),
    /** Stop a stream that sends nothing for this long (seconds). */
    stallTimeout: z.number().int().positive().default(60),
    backup: z
      .strictObject({
        /**
         * After each backup, put a copy of its snapshot on every node (kept by the agents, see their
         * localSnapshots.keep), so that a restore starts from it instead of moving it over the network.
         */
        copySnapshotToNodes: z.boolean().default(false),
      })
      .default({ copySnapshotToNodes: false }),
    /** What `kbur prune` keeps: see retentionSchema. Without it, prune refuses. */
    retention: retentionSchema.optional(),
    /** The etcd kbur starts from a snapshot on this host (verify --deep, restore --namespace, diff, import). */
    scratch: z
      .strictObject({
        /** The etcd binary; default `etcd` on PATH. */
        etcd: z.string().min(1).optional(),
        /** The restore tool; default etcdutl on PATH, else etcdctl. */
        restoreTool: z.string().min(1).optional(),
        /** Where its temporary folder goes (it needs about the snapshot's size); default the system's temp dir. */
        dir: z.string().min(1).optional(),
      })
      .default({}),
    /**
     * The cluster's etcd, reached directly by restore --namespace and diff: its client URLs and a
     * client certificate it accepts (kubeadm's apiserver-etcd-client or healthcheck-client pair).
     */
    etcd: z
      .strictObject({
        endpoints: z
          .array(z.string().regex(/^https?:\/\/[^\s/]+$/, { message: 'expected a client URL, e.g. https://10.0.0.11:2379' }))
          .min(1),
        ca: z.string().min(1),
        cert: z.string().min(1),
        key: z.string().min(1),
      })
      .optional(),
    /**
     * Prometheus text written after each backup, verify, prune and restore: `textfile` for
     * node_exporter's textfile collector (a *.prom file in its directory), `pushgateway` a
     * Pushgateway's base URL to push the same to.
     */
    metrics: z
      .strictObject({
        textfile: z
          .string()
          .regex(/\.prom$/, { message: 'expected a file name ending in .prom (the only files the textfile collector reads)' })
          .optional(),
        pushgateway: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL such as http://127.0.0.1:9091' }).optional(),
      })
      .default({}),
    /** Dump profiles a backup runs: each names a node and a profile that node's agent config defines. */
    dumps: z.array(z.strictObject({ node: nameSchema('node'), profile: nameSchema('profile') })).default([]),
    /** Of the snapshot and node archives in the repository, before encryption (dumps are compressed by their agent). */
    compression: z.enum(['none', 'gzip', 'zstd']).default('none'),
    /** Every artifact encrypted with age to these public keys; a backup needs nothing else. */
    encryption: z.strictObject({ recipients: z.array(ageRecipient).min(1, { message: 'expected at least one age recipient' }) }).optional(),
    /** Ed25519: `key` signs each manifest (and checks it); a host that only restores sets `publicKey` instead. */
    signing: z
      .strictObject({ key: z.string().min(1).optional(), publicKey: z.string().min(1).optional() })
      .refine((s) => s.key || s.publicKey, { message: 'expected key (a private key made by kbur key generate) or publicKey' })
      .optional(),
  })
  .superRefine((c, ctx) => {
    c.dumps.forEach((d, i) => {
      if (!c.nodes.some((n) => n.name === d.node)) {
        ctx.addIssue({
          code: 'custom',
          path: ['dumps', i, 'node'],
          message: `no node named "${d.node}" in nodes (${c.nodes.map((n) => n.name).join(', ')})`,
        });
      }
    });
  });

export type CoordinatorConfig = z.output<typeof schema>;
export type S3RepositoryConfig = z.output<typeof s3Repository>;

/** Loads kbur.yaml; relative paths in it are relative to the file's own folder. */
export async function loadCoordinatorConfig(file: string): Promise<CoordinatorConfig> {
  const config = await loadConfigFile(file, schema, 'kbur config');
  const base = dirname(resolve(file));
  const abs = (p: string): string => resolve(base, p);
  return {
    ...config,
    tls: { ca: abs(config.tls.ca), cert: abs(config.tls.cert), key: abs(config.tls.key) },
    repository:
      config.repository.type === 'local'
        ? { ...config.repository, path: abs(config.repository.path) }
        : {
            ...config.repository,
            ...(config.repository.credentialsFile ? { credentialsFile: abs(config.repository.credentialsFile) } : {}),
          },
    scratch: {
      ...(config.scratch.etcd ? { etcd: abs(config.scratch.etcd) } : {}),
      ...(config.scratch.restoreTool ? { restoreTool: abs(config.scratch.restoreTool) } : {}),
      ...(config.scratch.dir ? { dir: abs(config.scratch.dir) } : {}),
    },
    etcd: config.etcd && { ...config.etcd, ca: abs(config.etcd.ca), cert: abs(config.etcd.cert), key: abs(config.etcd.key) },
    metrics: { ...config.metrics, ...(config.metrics.textfile ? { textfile: abs(config.metrics.textfile) } : {}) },
    ...(config.signing
      ? {
          signing: {
            ...(config.signing.key ? { key: abs(config.signing.key) } : {}),
            ...(config.signing.publicKey ? { publicKey: abs(config.signing.publicKey) } : {}),
          },
        }
      : {}),
  };
}

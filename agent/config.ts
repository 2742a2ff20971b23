import { hostname } from 'node:os';
import { z } from 'zod';
import { loadConfigFile } from '../shared/config-file.js';
import { dumpProfileSchema } from './dumps/profiles.js';
import { nameSchema } from '../shared/manifest.js';
import { absPathSchema, hostPortSchema } from '../shared/schemas.js';

export const DEFAULT_AGENT_CONFIG = '/etc/kbur/agent.yaml';

export const ROLES = ['admin', 'operator', 'monitor'] as const;
export type Role = (typeof ROLES)[number];

const url = z.string().regex(/^https?:\/\/\S+$/, { message: 'expected a URL such as https://127.0.0.1:2379' });

const schema = z.strictObject({
  /** Name of this node as the coordinator knows it. Default: the hostname. */
  node: z
    .string()
    .min(1)
    .default(() => hostname()),
  /** gRPC listen address; mTLS only. */
  listen: hostPortSchema('127.0.0.1:7443'),
  tls: z.strictObject({ ca: absPathSchema, cert: absPathSchema, key: absPathSchema }),
  /** Client certificate CN -> role. A CN not listed here is refused. */
  clients: z.record(z.string().min(1), z.enum(ROLES)).refine((c) => Object.keys(c).length > 0, {
    message: 'expected at least one client CN mapped to a role (admin, operator or monitor)',
  }),
  kubernetesDir: absPathSchema.default('/etc/kubernetes'),
  /**
   * The local etcd member. Everything is discovered from the static pod manifest (default
   * <kubernetesDir>/manifests/etcd.yaml); each value can be set by hand instead (external etcd, systemd unit).
   */
  etcd: z
    .strictObject({
      manifest: absPathSchema.optional(),
      endpoints: z.array(url).min(1).optional(),
      ca: absPathSchema.optional(),
      cert: absPathSchema.optional(),
      key: absPathSchema.optional(),
      dataDir: absPathSchema.optional(),
      name: z.string().min(1).optional(),
      /** etcd run as a systemd unit instead of a static pod: the unit a restore stops and starts. */
      unit: z
        .string()
        .regex(/^[\w@.:-]+$/, { message: 'expected a systemd unit name, e.g. etcd.service' })
        .optional(),
      /** The restore tool; default: etcdutl on PATH, else etcdctl (etcd 3.4). */
      restoreTool: absPathSchema.optional(),
      /** Seconds a restore waits for etcd to stop or start. */
      stopTimeout: z.number().int().positive().default(60),
    })
    .default({ stopTimeout: 60 }),
  stateDir: absPathSchema.default('/var/lib/kbur'),
  /**
   * Snapshot copies this node keeps in <stateDir>/snapshots when the coordinator sends them
   * (backup.copySnapshotToNodes), so that a restore starts without moving the snapshot: the
   * newest `keep` are kept, older ones removed; 0 refuses copies.
   */
  localSnapshots: z.strictObject({ keep: z.number().int().min(0).default(1) }).default({ keep: 1 }),
  /** HTTP /healthz and /readyz; plain HTTP, so keep it on loopback or a management network. */
  health: hostPortSchema('127.0.0.1:7443').default('127.0.0.1:9443'),
  logLevel: z.enum(['error', 'warn', 'info', 'debug']).default('info'),
  /** Application dumps this node can run, by name. A request can only name one of these. */
  dumps: z.record(nameSchema('profile'), dumpProfileSchema).default({}),
});

export type AgentConfig = z.output<typeof schema>;

export function loadAgentConfig(file: string): Promise<AgentConfig> {
  return loadConfigFile(file, schema, 'agent config');
}

export const agentConfigSchema = schema;

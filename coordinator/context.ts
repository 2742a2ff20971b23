import { createLogger, type Logger } from '../shared/log.js';
import { readTlsFiles } from '../shared/tls.js';
import { AgentClient } from './agent-client.js';
import { DEFAULT_COORDINATOR_CONFIG, loadCoordinatorConfig, type CoordinatorConfig } from './config.js';
import { LocalRepository } from './repository/local.js';
import { describeHolder, type LockRequest } from './repository/lock.js';
import type { Repository } from './repository/repository.js';
import type { SealSettings } from './repository/seal.js';
import { loadSigningKeys, signedRepository, type SigningKeys } from './repository/signing.js';

export interface GlobalOptions {
  config?: string;
  json?: boolean;
  debug?: boolean;
}

/** What every command works with, built from kbur.yaml. */
export interface Context {
  config: CoordinatorConfig;
  configFile: string;
  /** With signing set: its manifests signed when written, refused when their signature does not check. */
  repository: Repository;
  signing: SigningKeys | undefined;
  /** How artifacts are compressed and encrypted as they are written. */
  seal: SealSettings;
  log: Logger;
  json: boolean;
  out: NodeJS.WritableStream;
}

export function configFileFrom(opts: GlobalOptions): string {
  return opts.config ?? process.env.KBUR_CONFIG ?? DEFAULT_COORDINATOR_CONFIG;
}

export async function loadContext(opts: GlobalOptions, out: NodeJS.WritableStream = process.stdout): Promise<Context> {
  const configFile = configFileFrom(opts);
  const config = await loadCoordinatorConfig(configFile);
  const signing = config.signing ? await loadSigningKeys(config.signing) : undefined;
  const log = createLogger({ component: 'kbur', stream: 'stderr', level: opts.debug ? 'debug' : (process.env.KBUR_LOG_LEVEL ?? 'warn') });
  const repository = await openRepository(config, log);
  return {
    config,
    configFile,
    repository: signing ? signedRepository(repository, signing) : repository,
    signing,
    seal: { compression: config.compression, recipients: config.encryption?.recipients ?? [] },
    log,
    json: Boolean(opts.json),
    out,
  };
}

async function openRepository(config: CoordinatorConfig, log: Logger): Promise<Repository> {
  if (config.repository.type === 'local') return new LocalRepository(config.repository.path);
  // Loaded only for an S3 repository: the AWS SDK is the larger part of the bundle, and every kbur command starts afresh.
  const { S3Repository } = await import('./repository/s3.js');
  return S3Repository.open(config.repository, { log, requestTimeoutMs: config.stallTimeout * 1000 });
}

/** Clients for every node of the config (or of `nodes`, e.g. a restore's plan); the caller closes them. */
export async function connectAgents(ctx: Context, nodes: { name: string; agent: string }[] = ctx.config.nodes): Promise<AgentClient[]> {
  const creds = AgentClient.credentials(await readTlsFiles(ctx.config.tls, ctx.configFile));
  return nodes.map((n) => new AgentClient(n, creds));
}

/** The repository lock request of a command: `--wait` as given, waiting announced once on stderr. */
export function lockRequest(
  ctx: Context,
  operation: string,
  opts: { waitMs: number; signal: AbortSignal; restoreId?: string },
): LockRequest {
  return {
    repository: ctx.repository,
    cluster: ctx.config.cluster,
    operation,
    ...opts,
    log: ctx.log,
    onWait: (h) =>
      void process.stderr.write(
        `kbur: waiting up to ${Math.round(opts.waitMs / 1000)} s for the repository lock, held by ${describeHolder(h)}\n`,
      ),
  };
}

import { mkdir } from 'node:fs/promises';
import type { Server as HttpServer } from 'node:http';
import { watch } from 'chokidar';
import { Command } from 'commander';
import { KburError, asKburError } from '../shared/errors.js';
import { createLogger, type Logger } from '../shared/log.js';
import { readTlsFiles } from '../shared/tls.js';
import { KBUR_VERSION } from '../shared/version.js';
import { stringify } from 'yaml';
import { discoverEtcd } from './etcd/discovery.js';
import { DEFAULT_AGENT_CONFIG, loadAgentConfig, type AgentConfig } from './config.js';
import { startHealthServer } from './health.js';
import { AgentMetrics } from './metrics.js';
import { warmNodeInfo } from './node-info.js';
import { AGENT_SERVICE_NAME, AgentServer } from './server.js';
import { AgentState } from './state.js';

export const AgentExit = { OK: 0, INTERNAL: 1, BAD_CONFIG: 2, CANNOT_LISTEN: 3 } as const;

/** Runs the agent until SIGTERM/SIGINT; resolves with the exit code. */
export async function runAgent(argv: string[]): Promise<number> {
  const opts = new Command('kbur-agent')
    .description('kbur node agent: etcd snapshots and /etc/kubernetes archives of this node, over gRPC with mTLS')
    .option('-c, --config <file>', 'agent config file', DEFAULT_AGENT_CONFIG)
    .option('--print-config', 'print the effective config, with the etcd settings found in the etcd manifest, and exit')
    .version(KBUR_VERSION)
    .parse(argv)
    .opts<{ config: string; printConfig?: boolean }>();
  if (opts.printConfig) return printConfig(opts.config);

  let state: AgentState;
  let config: AgentConfig;
  try {
    config = await loadAgentConfig(opts.config);
    state = await AgentState.build(config);
  } catch (err) {
    return reportStartupError(err, AgentExit.BAD_CONFIG);
  }
  const log = createLogger({ component: 'kbur-agent', level: config.logLevel });
  await mkdir(config.stateDir, { recursive: true, mode: 0o700 });

  const metrics = new AgentMetrics(() => state);
  const server = new AgentServer(() => state, log, metrics);
  let health: HttpServer;
  try {
    await server.listen(config.listen, await readTlsFiles(config.tls, opts.config));
    health = await startHealthServer(config.health, () => state, metrics);
  } catch (err) {
    await server.close(0);
    return reportStartupError(err, KburError.hasCode(err, 'INVALID_CONFIG') ? AgentExit.BAD_CONFIG : AgentExit.CANNOT_LISTEN);
  }
  log.info('agent started', {
    node: config.node,
    listen: config.listen,
    health: config.health,
    etcd: state.etcd.missing ?? state.etcd.settings.endpoint,
    version: KBUR_VERSION,
    // The V8 flags it runs with (AGENT_NODE_FLAGS), whether from the shebang or built into the executable.
    nodeFlags: process.execArgv,
  });

  warmNodeInfo();
  metrics.currentCertificates().catch(() => undefined);
  const readiness = setInterval(() => void updateReadiness(server, state, metrics), 5_000);
  void updateReadiness(server, state, metrics);

  const watcher = watch(opts.config, { ignoreInitial: true, awaitWriteFinish: { stabilityThreshold: 200, pollInterval: 50 } });
  // One reload at a time, each against the state the previous one left.
  let reloading = Promise.resolve();
  watcher.on('all', (event) => {
    if (event !== 'add' && event !== 'change') return;
    reloading = reloading.then(async () => {
      const next = await reload(opts.config, state, log);
      if (next) state = next;
    });
  });

  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      log.info('stopping', { signal });
      resolve();
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  clearInterval(readiness);
  await watcher.close();
  await server.close();
  await new Promise((resolve) => health.close(resolve));
  state.retire();
  log.info('agent stopped');
  return AgentExit.OK;
}

/** A new config replaces the old only when it loads, validates and its etcd settings resolve. */
async function reload(file: string, current: AgentState, log: Logger): Promise<AgentState | undefined> {
  try {
    const config = await loadAgentConfig(file);
    const next = await AgentState.build(config);
    const restartOnly = (['listen', 'tls', 'health', 'node'] as const).filter(
      (k) => JSON.stringify(config[k]) !== JSON.stringify(current.config[k]),
    );
    if (restartOnly.length) log.warn('config keys changed that apply only after a restart', { keys: restartOnly });
    current.retire();
    log.info('config reloaded', { file });
    return next;
  } catch (err) {
    const e = asKburError(err);
    log.error('config reload refused; the previous config stays in force', { file, error: e.message, hint: e.hint });
    return undefined;
  }
}

/** Every 5 s: the gRPC health of the etcd service, and the member status /metrics serves from memory. */
async function updateReadiness(server: AgentServer, state: AgentState, metrics: AgentMetrics): Promise<void> {
  await state.refreshEtcd();
  const st = await state.etcd.status();
  server.health.setStatus(AGENT_SERVICE_NAME, st.reachable ? 'SERVING' : 'NOT_SERVING');
  metrics.memberStatus(st);
}

/** The config as the agent would run with it: defaults filled in, etcd's settings as discovered. */
async function printConfig(file: string): Promise<number> {
  try {
    const config = await loadAgentConfig(file);
    const etcd = await discoverEtcd(config);
    if (!etcd) {
      process.stdout.write(
        `# kbur-agent ${KBUR_VERSION}: the effective config of ${file}; no etcd member here yet (no etcd manifest and no etcd.* settings: a reset node, which a restore rebuilds from its archive)\n${stringify(config)}`,
      );
      return AgentExit.OK;
    }
    const effective = {
      ...config,
      etcd: {
        ...config.etcd,
        endpoints: config.etcd.endpoints ?? [etcd.endpoint],
        name: etcd.name,
        dataDir: etcd.dataDir,
        ca: etcd.ca,
        cert: etcd.cert,
        key: etcd.key,
        ...(etcd.manifest ? { manifest: etcd.manifest } : {}),
      },
    };
    const from = etcd.manifest ? `etcd settings not in the file come from ${etcd.manifest}` : 'etcd settings all come from the file';
    process.stdout.write(`# kbur-agent ${KBUR_VERSION}: the effective config of ${file}; ${from}\n${stringify(effective)}`);
    return AgentExit.OK;
  } catch (err) {
    return reportStartupError(err, AgentExit.BAD_CONFIG);
  }
}

function reportStartupError(err: unknown, code: number): number {
  const e = asKburError(err);
  process.stderr.write(`kbur-agent: ${e.message}\n`);
  if (e.hint) process.stderr.write(`  what to do: ${e.hint}\n`);
  if (e.code === 'INTERNAL' && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  return e.code === 'INTERNAL' ? AgentExit.INTERNAL : code;
}

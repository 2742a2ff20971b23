/**
 * The backup benchmark (issue acceptance): for each etcd size, a fresh sandbox (3-member TLS etcd,
 * real kbur agents) filled to that size, then, from the member kbur snapshots, `etcdctl snapshot
 * save` and `kbur backup` timed in alternating order. Reports the wall-time ratio kbur/etcdctl and
 * the peak RSS of the coordinator (kbur CLI) and of the agent that streamed the snapshot.
 *
 *   npm run bench                                  300 MiB and 1536 MiB, 3 runs each
 *   node dist/scripts/bench.js [--sizes 300,1536] [--runs 3] [--out bench-results/backup.json]
 *                              [--root DIR] [--keep] [--network 127.0.2]
 *
 * Targets: median ratio at most 1.15, each process under 150 MiB at every size. Missing a target is
 * a result, not an error: the exit code is 0 then, 1 if a measurement could not be taken, 130 on
 * Ctrl-C. Results go to --out (JSON) and a Markdown table beside it.
 *
 * How it measures:
 *   - wall time: from spawn to exit of each process (both include their own startup);
 *   - coordinator and etcdctl peak RSS and CPU: /proc/<pid>/status VmHWM and /proc/<pid>/stat
 *     utime+stime, polled every 20 ms until the process exits (growth in the last < 20 ms is missed);
 *   - agent peak RSS: VmHWM of the agent process after the run: the peak over its whole life
 *     (startup, the warm-up backup and every run so far at this size); agents start fresh per size;
 *   - agent and etcd-member CPU: utime+stime deltas of those long-lived processes around each run.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs, promisify } from 'node:util';
import { Etcd3 } from 'etcd3';
import type { Manifest } from '../shared/manifest.js';
import { KBUR_VERSION } from '../shared/version.js';
import { KBUR_BIN } from '../test/helpers/kbur.js';
import { createSandbox, type Sandbox, type SandboxNode } from '../test/sandbox/cluster.js';

const run = promisify(execFile);

const MiB = 1 << 20;
const GiB = 1 << 30;
const VALUE_SIZE = MiB;
const FILL_IN_FLIGHT = 8;
const FILL_GROWTH_PER_VALUE = 1.25;
const POLL_MS = 20;
const ETCD_MAX_QUOTA = 8 * GiB;
const TARGETS = { ratioMax: 1.15, rssMaxMiB: 150 } as const;
const SIZE_TOLERANCE = 0.01;
/** Only PATH and the API version reach etcdctl: ETCDCTL_* variables of the caller's shell would override its flags. */
const ETCDCTL_ENV = { PATH: process.env.PATH ?? '/usr/bin:/bin', ETCDCTL_API: '3' };

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  sizes: number[];
  runs: number;
  out: string;
  root: string | undefined;
  keep: boolean;
  network: string;
}

const USAGE = `usage: node dist/scripts/bench.js [--sizes 300,1536] [--runs 3] [--out bench-results/backup.json] [--root DIR] [--keep] [--network 127.0.2]`;

function options(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      sizes: { type: 'string', default: '300,1536' },
      runs: { type: 'string', default: '3' },
      out: { type: 'string', default: 'bench-results/backup.json' },
      root: { type: 'string' },
      keep: { type: 'boolean', default: false },
      network: { type: 'string', default: process.env.KBUR_SANDBOX_NETWORK ?? '127.0.2' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const sizes = values.sizes.split(',').map((s) => Number(s.trim()));
  if (sizes.length === 0 || sizes.some((s) => !Number.isInteger(s) || s < 1))
    throw new Error(`--sizes: expected MiB as integers, e.g. 300,1536; got ${values.sizes}`);
  if (sizes.some((s) => s * MiB > ETCD_MAX_QUOTA - GiB))
    throw new Error(`--sizes: etcd's quota is at most 8 GiB, so sizes up to 7168 MiB; got ${values.sizes}`);
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs: expected a positive integer, got ${values.runs}`);
  if (!/^\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(values.network))
    throw new Error(`--network: expected three octets like 127.0.2, got ${values.network}`);
  return {
    sizes,
    runs,
    out: resolve(values.out),
    root: values.root === undefined ? undefined : resolve(values.root),
    keep: values.keep,
    network: values.network,
  };
}

// ---------------------------------------------------------------------------------------------
// Output

const started = performance.now();

function log(text: string): void {
  const t = ((performance.now() - started) / 1000).toFixed(0).padStart(5);
  process.stderr.write(`[bench ${t}s] ${text}\n`);
}

const round = (x: number, digits = 3): number => Math.round(x * 10 ** digits) / 10 ** digits;
const toMiB = (bytes: number): number => round(bytes / MiB, 1);

// ---------------------------------------------------------------------------------------------
// /proc

const CLK_TCK = ((): number => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** A `Vm*:` line of /proc/<pid>/status in KiB; undefined when the process is gone (or a zombie). */
function procStatusKiB(pid: number, field: 'VmHWM' | 'VmRSS' | 'RssAnon'): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** utime+stime of a process in seconds; undefined when it is gone. */
function procCpuSeconds(pid: number): number | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which may hold spaces and parentheses: state is field 3, utime 14, stime 15.
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
  } catch {
    return undefined;
  }
}

function procArgv(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

function pids(): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
}

function findPid(what: string, match: (argv: string[]) => boolean): number {
  const found = pids().filter((pid) => match(procArgv(pid)));
  if (found.length !== 1) throw new Error(`expected one ${what} process, found ${found.length} (${found.join(', ') || 'none'})`);
  return found[0]!;
}

/** Every live process below `root` (the bench's own children, grandchildren...). */
function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const pid of pids()) {
    try {
      const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
      parent.set(pid, Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    for (const [pid, ppid] of parent) {
      if (ppid === p) {
        out.push(pid);
        walk(pid);
      }
    }
  };
  walk(root);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Running and measuring one process

interface Measured {
  code: number | null;
  signal: NodeJS.Signals | null;
  seconds: number;
  /** VmHWM, KiB, the largest seen while polling. */
  peakRssKiB: number;
  /** utime+stime, last seen while polling. */
  cpuSeconds: number;
  stdout: string;
  stderr: string;
}

/** Child processes running now, killed on Ctrl-C. */
const running = new Set<ChildProcess>();

async function measure(cmd: string, args: string[], env: NodeJS.ProcessEnv, signal: AbortSignal): Promise<Measured> {
  signal.throwIfAborted();
  const t0 = performance.now();
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    if (stderr.length < 1 << 20) stderr += d.toString();
  });
  let peak = 0;
  let cpu = 0;
  const pid = child.pid;
  const poll = (): void => {
    if (pid === undefined) return;
    const hwm = procStatusKiB(pid, 'VmHWM');
    if (hwm !== undefined) peak = Math.max(peak, hwm);
    const c = procCpuSeconds(pid);
    if (c !== undefined && hwm !== undefined) cpu = c;
  };
  poll();
  const timer = setInterval(poll, POLL_MS);
  const kill = (): void => void child.kill('SIGTERM');
  signal.addEventListener('abort', kill, { once: true });
  try {
    const [code, sig, seconds] = await new Promise<[number | null, NodeJS.Signals | null, number]>((res, rej) => {
      child.once('error', rej);
      child.once('exit', (c, s) => res([c, s, (performance.now() - t0) / 1000]));
    });
    // stdout may still hold the last bytes: wait for the pipes to close.
    if (child.stdout.readable || child.stderr.readable) await new Promise((res) => child.once('close', res));
    return { code, signal: sig, seconds, peakRssKiB: peak, cpuSeconds: cpu, stdout, stderr };
  } finally {
    clearInterval(timer);
    signal.removeEventListener('abort', kill);
    running.delete(child);
  }
}

function failure(what: string, m: Measured): Error {
  const tail = m.stderr.trim().split('\n').slice(-10).join('\n');
  return new Error(`${what} exited ${m.code ?? m.signal}${tail ? `:\n${tail}` : ''}`);
}

// ---------------------------------------------------------------------------------------------
// etcd

interface EndpointStatus {
  endpoint: string;
  node: string;
  dbSize: number;
  dbSizeInUse: number | undefined;
  version: string;
  isLeader: boolean;
  raftIndex: number;
}

async function endpointStatus(sandbox: Sandbox, nodes: SandboxNode[] = sandbox.nodes): Promise<EndpointStatus[]> {
  const out = await sandbox.etcdctl(['endpoint', 'status', '-w', 'json'], { endpoints: nodes.map((n) => n.clientUrl) });
  // Member ids are uint64: quoted before JSON.parse rounds them.
  const exact = out.replace(/"(member_id|leader|cluster_id)":(\d+)/g, '"$1":"$2"');
  type Raw = {
    Endpoint: string;
    Status: { header: { member_id: string }; leader: string; version: string; dbSize: number; dbSizeInUse?: number; raftIndex: number };
  };
  return (JSON.parse(exact) as Raw[]).map((s) => ({
    endpoint: s.Endpoint,
    node: sandbox.nodes.find((n) => n.clientUrl === s.Endpoint)?.name ?? s.Endpoint,
    dbSize: Number(s.Status.dbSize),
    dbSizeInUse: s.Status.dbSizeInUse === undefined ? undefined : Number(s.Status.dbSizeInUse),
    version: s.Status.version,
    isLeader: s.Status.leader === s.Status.header.member_id,
    raftIndex: Number(s.Status.raftIndex),
  }));
}

/** A client on one member only (the leader, for the fill: no forwarding of 1 MiB requests). */
async function etcdClientOn(sandbox: Sandbox, endpoint: string): Promise<Etcd3> {
  const pki = join(sandbox.nodes[0]!.kubernetesDir, 'pki', 'etcd');
  const [ca, cert, key] = await Promise.all(
    ['ca.crt', 'healthcheck-client.crt', 'healthcheck-client.key'].map((f) => readFile(join(pki, f))),
  );
  return new Etcd3({
    hosts: [endpoint],
    credentials: { rootCertificate: ca!, certChain: cert!, privateKey: key! },
    grpcOptions: { 'grpc.ssl_target_name_override': 'localhost' },
  });
}

interface Fill {
  seconds: number;
  keys: number;
  rounds: number;
  bytesWritten: number;
  mibPerSecond: number;
  secondsPerGiB: number;
}

/**
 * Puts 1 MiB values of fresh random bytes (incompressible, as kbur does not compress yet; 0.5 ms
 * of CPU per MiB) under /bench/fill/, FILL_IN_FLIGHT at a time, until every member's db is at
 * least `targetBytes`.
 */
async function fillEtcd(sandbox: Sandbox, targetBytes: number, signal: AbortSignal): Promise<Fill> {
  const t0 = performance.now();
  let statuses = await endpointStatus(sandbox);
  let rounds = 0;
  const leader = statuses.find((s) => s.isLeader) ?? statuses[0]!;
  const client = await etcdClientOn(sandbox, leader.endpoint);
  let next = 0;
  let written = 0;
  let lastReport = performance.now();
  try {
    for (;;) {
      const smallest = Math.min(...statuses.map((s) => s.dbSize));
      if (smallest >= targetBytes) break;
      // A 1 MiB value grows bbolt's file by about 1.2 MiB (257 pages, plus pages freed but not yet
      // reusable): aim below what is missing and top up in rounds, so as not to overshoot by 20%.
      const end = next + Math.max(1, Math.floor((targetBytes - smallest) / (FILL_GROWTH_PER_VALUE * VALUE_SIZE)));
      const stop = new AbortController();
      const both = AbortSignal.any([signal, stop.signal]);
      const worker = async (): Promise<void> => {
        for (;;) {
          both.throwIfAborted();
          const i = next++;
          if (i >= end) return;
          await client.put(`/bench/fill/${String(i).padStart(7, '0')}`).value(randomBytes(VALUE_SIZE));
          written += VALUE_SIZE;
          if (performance.now() - lastReport > 10_000) {
            lastReport = performance.now();
            const secs = (lastReport - t0) / 1000;
            log(`  fill: ${toMiB(written)} MiB written in ${secs.toFixed(0)} s (${(written / MiB / secs).toFixed(1)} MiB/s)`);
          }
        }
      };
      await Promise.all(
        Array.from({ length: FILL_IN_FLIGHT }, () =>
          worker().catch((err: unknown) => {
            stop.abort(err);
            throw err;
          }),
        ),
      );
      next = end;
      rounds++;
      // Followers apply what the leader committed a moment later.
      for (let i = 0; i < 50; i++) {
        statuses = await endpointStatus(sandbox);
        const indexes = statuses.map((s) => s.raftIndex);
        if (Math.max(...indexes) - Math.min(...indexes) <= 2) break;
        await sleep(200);
      }
    }
  } finally {
    client.close();
  }
  const seconds = (performance.now() - t0) / 1000;
  return {
    seconds: round(seconds, 1),
    keys: next,
    rounds,
    bytesWritten: written,
    mibPerSecond: round(written / MiB / seconds, 1),
    secondsPerGiB: round(seconds / (written / GiB), 1),
  };
}

// ---------------------------------------------------------------------------------------------
// One size

interface RunResult {
  run: number;
  order: 'etcdctl-first' | 'kbur-first';
  node: string;
  etcdctlSeconds: number;
  kburSeconds: number;
  ratio: number;
  coordinatorPeakRssMiB: number;
  agentPeakRssMiB: number;
  etcdctlPeakRssMiB: number;
  etcdctlSnapshotBytes: number;
  kburSnapshotBytes: number;
  etcdctlMiBps: number;
  kburMiBps: number;
  cpuSeconds: {
    coordinator: number;
    agent: number;
    etcdDuringKbur: number;
    etcdctl: number;
    etcdDuringEtcdctl: number;
  };
  problems: string[];
}

type Summary = Record<
  | 'etcdctlSeconds'
  | 'kburSeconds'
  | 'ratio'
  | 'coordinatorPeakRssMiB'
  | 'agentPeakRssMiB'
  | 'etcdctlPeakRssMiB'
  | 'etcdctlMiBps'
  | 'kburMiBps',
  number
> & {
  cpuSeconds: RunResult['cpuSeconds'];
};

interface SizeResult {
  sizeMiB: number;
  quotaBackendBytes: number;
  dbSizeBytes: number;
  dbSizeMiB: number;
  /** etcd members after the runs; RSS counts bbolt's mmapped file pages too, anonRssMiB is etcd's heap (raft log included). */
  members: (EndpointStatus & { rssMiB: number | undefined; anonRssMiB: number | undefined; peakRssMiB: number | undefined })[];
  snapshotNode: string;
  sandboxStartSeconds: number;
  fillSeconds: number;
  fill: Fill;
  warmUp: { kburSeconds: number; coordinatorPeakRssMiB: number } | undefined;
  loadAverage: { before: number[]; after: number[] };
  runs: RunResult[];
  median: Summary | undefined;
  max: { coordinatorPeakRssMiB: number; agentPeakRssMiB: number } | undefined;
  targets: typeof TARGETS;
  pass: { ratio: boolean; rss: boolean; coordinatorRss: boolean; agentRss: boolean; snapshotsMatch: boolean };
  error?: string;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function summarize(runs: RunResult[]): Summary | undefined {
  if (runs.length === 0) return undefined;
  const m = (f: (r: RunResult) => number, digits = 3): number => round(median(runs.map(f)), digits);
  return {
    etcdctlSeconds: m((r) => r.etcdctlSeconds),
    kburSeconds: m((r) => r.kburSeconds),
    ratio: m((r) => r.ratio),
    coordinatorPeakRssMiB: m((r) => r.coordinatorPeakRssMiB, 1),
    agentPeakRssMiB: m((r) => r.agentPeakRssMiB, 1),
    etcdctlPeakRssMiB: m((r) => r.etcdctlPeakRssMiB, 1),
    etcdctlMiBps: m((r) => r.etcdctlMiBps, 1),
    kburMiBps: m((r) => r.kburMiBps, 1),
    cpuSeconds: {
      coordinator: m((r) => r.cpuSeconds.coordinator, 2),
      agent: m((r) => r.cpuSeconds.agent, 2),
      etcdDuringKbur: m((r) => r.cpuSeconds.etcdDuringKbur, 2),
      etcdctl: m((r) => r.cpuSeconds.etcdctl, 2),
      etcdDuringEtcdctl: m((r) => r.cpuSeconds.etcdDuringEtcdctl, 2),
    },
  };
}

interface KburOutcome {
  measured: Measured;
  manifest: Manifest;
  snapshotBytes: number;
}

/** kbur backup --json; its backup folder is removed once its manifest is read. */
async function kburBackup(sandbox: Sandbox, signal: AbortSignal): Promise<KburOutcome> {
  const measured = await measure(
    process.execPath,
    [KBUR_BIN, '--config', sandbox.coordinatorConfig, 'backup', '--json'],
    process.env,
    signal,
  );
  let manifest: Manifest;
  try {
    manifest = JSON.parse(measured.stdout) as Manifest;
  } catch {
    throw failure('kbur backup --json (no manifest on stdout)', measured);
  }
  await rm(join(sandbox.repoDir, manifest.cluster, 'backups', manifest.id), { recursive: true, force: true });
  if (measured.code !== 0 || manifest.phase !== 'Completed') {
    const why = manifest.failures.map((f) => `${f.part}: ${f.message}`).join('; ');
    throw new Error(`kbur backup exited ${measured.code ?? measured.signal} with phase ${manifest.phase}${why ? `: ${why}` : ''}`);
  }
  const snapshot = manifest.artifacts.find((a) => a.kind === 'etcd-snapshot');
  if (!manifest.etcd || !snapshot) throw new Error('kbur backup is Completed but has no etcd snapshot in its manifest');
  return { measured, manifest, snapshotBytes: snapshot.size };
}

async function etcdctlSnapshot(
  sandbox: Sandbox,
  node: SandboxNode,
  file: string,
  signal: AbortSignal,
): Promise<{ measured: Measured; bytes: number }> {
  const certs = join(sandbox.nodes[0]!.kubernetesDir, 'pki', 'etcd');
  const args = [
    `--endpoints=${node.clientUrl}`,
    `--cacert=${join(certs, 'ca.crt')}`,
    `--cert=${join(certs, 'healthcheck-client.crt')}`,
    `--key=${join(certs, 'healthcheck-client.key')}`,
    'snapshot',
    'save',
    file,
  ];
  try {
    const measured = await measure('etcdctl', args, ETCDCTL_ENV, signal);
    if (measured.code !== 0) throw failure('etcdctl snapshot save', measured);
    return { measured, bytes: (await stat(file)).size };
  } finally {
    await rm(file, { force: true });
    await rm(`${file}.part`, { force: true });
  }
}

async function benchSize(sizeMiB: number, opts: Options, dir: string, state: State): Promise<SizeResult> {
  const signal = state.abort.signal;
  const targetBytes = sizeMiB * MiB;
  const quota = Math.min(ETCD_MAX_QUOTA, 2 * targetBytes + GiB);
  const loadBefore = loadavg().map((x) => round(x, 2));
  log(`${sizeMiB} MiB: starting a sandbox in ${dir} on ${opts.network}.1x (quota ${toMiB(quota)} MiB)`);
  await mkdir(dir, { recursive: true });
  const t0 = performance.now();
  const sandbox = await createSandbox({ root: dir, quotaBackendBytes: quota, seed: true, network: opts.network });
  state.sandbox = sandbox;
  signal.throwIfAborted();
  await sandbox.startAgents();
  const sandboxStartSeconds = round((performance.now() - t0) / 1000, 1);

  log(`${sizeMiB} MiB: filling etcd (1 MiB values, ${FILL_IN_FLIGHT} in flight)`);
  const fill = await fillEtcd(sandbox, targetBytes, signal);
  log(
    `${sizeMiB} MiB: filled ${toMiB(fill.bytesWritten)} MiB in ${fill.seconds} s (${fill.mibPerSecond} MiB/s, ${fill.secondsPerGiB} s per GiB)`,
  );

  log(`${sizeMiB} MiB: warm-up kbur backup (discarded) to learn which member kbur snapshots`);
  const warm = await kburBackup(sandbox, signal);
  const snapshotNode = warm.manifest.etcd!.node;
  const node = sandbox.nodes.find((n) => n.name === snapshotNode);
  if (!node) throw new Error(`kbur snapshotted ${snapshotNode}, which is not a sandbox node`);
  const agentPid = findPid(
    `kbur-agent of ${node.name}`,
    (argv) => argv.includes(node.agentConfig) && argv.some((a) => a.endsWith('agent/bin.js')),
  );
  const etcdPid = findPid(
    `etcd of ${node.name}`,
    (argv) => argv[0]?.endsWith('etcd') === true && argv.includes(`--data-dir=${node.dataDir}`),
  );
  log(
    `${sizeMiB} MiB: kbur snapshots ${node.name} (${node.clientUrl}); agent pid ${agentPid}, etcd pid ${etcdPid}; warm-up took ${warm.measured.seconds.toFixed(2)} s`,
  );

  const runs: RunResult[] = [];
  const problems: string[] = [];
  for (let i = 0; i < opts.runs; i++) {
    const order = i % 2 === 0 ? 'etcdctl-first' : 'kbur-first';
    let e: { bytes: number; measured: Measured; etcdCpu: number } | undefined;
    let k: (KburOutcome & { etcdCpu: number; agentCpu: number; agentHwmKiB: number }) | undefined;
    const doEtcdctl = async (): Promise<void> => {
      const etcd0 = procCpuSeconds(etcdPid) ?? NaN;
      const got = await etcdctlSnapshot(sandbox, node, join(dir, `etcdctl-run${i + 1}.db`), signal);
      e = { ...got, etcdCpu: (procCpuSeconds(etcdPid) ?? NaN) - etcd0 };
    };
    const doKbur = async (): Promise<void> => {
      const etcd0 = procCpuSeconds(etcdPid) ?? NaN;
      const agent0 = procCpuSeconds(agentPid) ?? NaN;
      const got = await kburBackup(sandbox, signal);
      k = {
        ...got,
        etcdCpu: (procCpuSeconds(etcdPid) ?? NaN) - etcd0,
        agentCpu: (procCpuSeconds(agentPid) ?? NaN) - agent0,
        agentHwmKiB: procStatusKiB(agentPid, 'VmHWM') ?? NaN,
      };
    };
    for (const step of order === 'etcdctl-first' ? [doEtcdctl, doKbur] : [doKbur, doEtcdctl]) {
      await sleep(1_000, undefined, { signal });
      await step();
    }
    if (!e || !k) throw new Error(`run ${i + 1} did not measure both tools`);
    const runProblems: string[] = [];
    if (k.manifest.etcd!.node !== node.name)
      runProblems.push(
        `kbur snapshotted ${k.manifest.etcd!.node}, not ${node.name} as in the warm-up: etcdctl and kbur read different members`,
      );
    const diff = Math.abs(k.snapshotBytes - e.bytes) / e.bytes;
    if (diff > SIZE_TOLERANCE)
      runProblems.push(
        `kbur's snapshot is ${k.snapshotBytes} bytes, etcdctl's ${e.bytes}: ${(diff * 100).toFixed(2)}% apart (more than ${SIZE_TOLERANCE * 100}%)`,
      );
    problems.push(...runProblems.map((p) => `run ${i + 1}: ${p}`));
    const r: RunResult = {
      run: i + 1,
      order,
      node: k.manifest.etcd!.node,
      etcdctlSeconds: round(e.measured.seconds),
      kburSeconds: round(k.measured.seconds),
      ratio: round(k.measured.seconds / e.measured.seconds),
      coordinatorPeakRssMiB: round(k.measured.peakRssKiB / 1024, 1),
      agentPeakRssMiB: round(k.agentHwmKiB / 1024, 1),
      etcdctlPeakRssMiB: round(e.measured.peakRssKiB / 1024, 1),
      etcdctlSnapshotBytes: e.bytes,
      kburSnapshotBytes: k.snapshotBytes,
      etcdctlMiBps: round(e.bytes / MiB / e.measured.seconds, 1),
      kburMiBps: round(k.snapshotBytes / MiB / k.measured.seconds, 1),
      cpuSeconds: {
        coordinator: round(k.measured.cpuSeconds, 2),
        agent: round(k.agentCpu, 2),
        etcdDuringKbur: round(k.etcdCpu, 2),
        etcdctl: round(e.measured.cpuSeconds, 2),
        etcdDuringEtcdctl: round(e.etcdCpu, 2),
      },
      problems: runProblems,
    };
    runs.push(r);
    log(
      `${sizeMiB} MiB run ${i + 1}/${opts.runs} (${order}): etcdctl ${r.etcdctlSeconds.toFixed(2)} s, kbur ${r.kburSeconds.toFixed(2)} s, ratio ${r.ratio.toFixed(3)}; ` +
        `RSS coordinator ${r.coordinatorPeakRssMiB} MiB, agent ${r.agentPeakRssMiB} MiB; CPU coordinator ${r.cpuSeconds.coordinator} s, agent ${r.cpuSeconds.agent} s, etcdctl ${r.cpuSeconds.etcdctl} s` +
        (runProblems.length ? `; PROBLEM: ${runProblems.join('; ')}` : ''),
    );
  }

  const statuses = await endpointStatus(sandbox);
  const members = statuses.map((s) => {
    const n = sandbox.nodes.find((x) => x.name === s.node)!;
    let pid: number | undefined;
    try {
      pid = findPid(`etcd of ${n.name}`, (argv) => argv[0]?.endsWith('etcd') === true && argv.includes(`--data-dir=${n.dataDir}`));
    } catch {
      pid = undefined;
    }
    const kib = (f: 'VmRSS' | 'VmHWM' | 'RssAnon'): number | undefined => (pid === undefined ? undefined : procStatusKiB(pid, f));
    return {
      ...s,
      rssMiB: toMiBOrUndefined(kib('VmRSS')),
      anonRssMiB: toMiBOrUndefined(kib('RssAnon')),
      peakRssMiB: toMiBOrUndefined(kib('VmHWM')),
    };
  });
  const dbSizeBytes = statuses.find((s) => s.node === node.name)!.dbSize;
  const med = summarize(runs);
  const max = {
    coordinatorPeakRssMiB: Math.max(...runs.map((r) => r.coordinatorPeakRssMiB)),
    agentPeakRssMiB: Math.max(...runs.map((r) => r.agentPeakRssMiB)),
  };
  const coordinatorRss = max.coordinatorPeakRssMiB < TARGETS.rssMaxMiB;
  const agentRss = max.agentPeakRssMiB < TARGETS.rssMaxMiB;
  return {
    sizeMiB,
    quotaBackendBytes: quota,
    dbSizeBytes,
    dbSizeMiB: toMiB(dbSizeBytes),
    members,
    snapshotNode: node.name,
    sandboxStartSeconds,
    fillSeconds: fill.seconds,
    fill,
    warmUp: { kburSeconds: round(warm.measured.seconds), coordinatorPeakRssMiB: round(warm.measured.peakRssKiB / 1024, 1) },
    loadAverage: { before: loadBefore, after: loadavg().map((x) => round(x, 2)) },
    runs,
    median: med,
    max,
    targets: TARGETS,
    pass: {
      ratio: med !== undefined && med.ratio <= TARGETS.ratioMax,
      rss: coordinatorRss && agentRss,
      coordinatorRss,
      agentRss,
      snapshotsMatch: problems.length === 0,
    },
  };
}

function toMiBOrUndefined(kib: number | undefined): number | undefined {
  return kib === undefined ? undefined : round(kib / 1024, 1);
}

// ---------------------------------------------------------------------------------------------
// Reports

interface Report {
  date: string;
  command: string;
  machine: Record<string, unknown>;
  method: string[];
  results: SizeResult[];
}

async function machineInfo(): Promise<Record<string, unknown>> {
  const first = async (cmd: string, args: string[]): Promise<string | undefined> => {
    try {
      return (await run(cmd, args, { env: ETCDCTL_ENV })).stdout.split('\n')[0]?.trim();
    } catch {
      return undefined;
    }
  };
  const [etcd, etcdctl, commit, dirty] = await Promise.all([
    first('etcd', ['--version']),
    first('etcdctl', ['version']),
    first('git', ['-C', dirname(dirname(KBUR_BIN)), 'rev-parse', '--short', 'HEAD']),
    run('git', ['-C', dirname(dirname(KBUR_BIN)), 'status', '--porcelain', '--untracked-files=no'], { env: ETCDCTL_ENV }).then(
      (r) => r.stdout.trim() !== '',
      () => undefined,
    ),
  ]);
  return {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    memGiB: round(totalmem() / GiB, 1),
    kernel: release(),
    node: process.version,
    etcd: etcd?.replace(/^etcd Version:\s*/, ''),
    etcdctl: etcdctl?.replace(/^etcdctl version:\s*/, ''),
    kbur: KBUR_VERSION,
    gitCommit: commit ? `${commit}${dirty ? ' (with uncommitted changes)' : ''}` : undefined,
  };
}

const METHOD = [
  'Per size: a fresh 3-member TLS etcd sandbox with fresh agents, filled with 1 MiB values of random bytes up to the size (all members).',
  'A warm-up `kbur backup` (discarded) tells which member kbur snapshots; etcdctl snapshot save is then run against that member only.',
  'Each run times both, alternating which goes first (page cache), 1 s apart; outputs are deleted after each.',
  'Wall time: spawn to exit of the process, startup included. ratio = kbur / etcdctl; the target applies to the median.',
  'Coordinator and etcdctl peak RSS / CPU: VmHWM and utime+stime from /proc, polled every 20 ms until exit.',
  "Agent peak RSS: the agent's VmHWM after the run, i.e. the peak over its whole life (startup, warm-up and runs so far at this size).",
  'Agent and etcd CPU: utime+stime deltas of those processes around each run (etcd: the snapshotted member).',
];

function fmt(x: number | undefined, digits = 2): string {
  return x === undefined || Number.isNaN(x) ? '-' : x.toFixed(digits);
}

function failedTargets(r: SizeResult): string[] {
  if (r.error || !r.median || !r.max) return [`${r.sizeMiB} MiB: no measurement (${r.error ?? 'no runs'})`];
  const out: string[] = [];
  if (!r.pass.ratio) out.push(`${r.sizeMiB} MiB: median ratio ${fmt(r.median.ratio, 3)} > ${TARGETS.ratioMax}`);
  if (!r.pass.coordinatorRss)
    out.push(`${r.sizeMiB} MiB: coordinator peak RSS ${fmt(r.max.coordinatorPeakRssMiB, 1)} MiB >= ${TARGETS.rssMaxMiB} MiB`);
  if (!r.pass.agentRss) out.push(`${r.sizeMiB} MiB: agent peak RSS ${fmt(r.max.agentPeakRssMiB, 1)} MiB >= ${TARGETS.rssMaxMiB} MiB`);
  if (!r.pass.snapshotsMatch) out.push(`${r.sizeMiB} MiB: snapshot check failed (see runs)`);
  return out;
}

function table(headers: string[], rows: string[][]): string[] {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
}

function markdownTable(headers: string[], rows: string[][]): string[] {
  return [
    `| ${headers.join(' | ')} |`,
    `|${headers.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ];
}

function summaryRows(report: Report): { headers: string[]; rows: string[][] } {
  const headers = [
    'size',
    'db MiB',
    'fill s',
    's/GiB',
    'etcdctl s',
    'kbur s',
    'ratio',
    'coord RSS',
    'agent RSS',
    'coord CPU s',
    'agent CPU s',
    'etcdctl CPU s',
    'result',
  ];
  const rows = report.results.map((r) => {
    const m = r.median;
    const verdict = r.error
      ? 'ERROR'
      : failedTargets(r).length
        ? `FAIL (${[!r.pass.ratio && 'ratio', !r.pass.rss && 'rss', !r.pass.snapshotsMatch && 'check'].filter(Boolean).join(', ')})`
        : 'pass';
    return [
      `${r.sizeMiB} MiB`,
      fmt(r.dbSizeMiB, 1),
      fmt(r.fillSeconds, 1),
      fmt(r.fill?.secondsPerGiB, 1),
      fmt(m?.etcdctlSeconds),
      fmt(m?.kburSeconds),
      fmt(m?.ratio, 3),
      `${fmt(r.max?.coordinatorPeakRssMiB, 1)} MiB`,
      `${fmt(r.max?.agentPeakRssMiB, 1)} MiB`,
      fmt(m?.cpuSeconds.coordinator),
      fmt(m?.cpuSeconds.agent),
      fmt(m?.cpuSeconds.etcdctl),
      verdict,
    ];
  });
  return { headers, rows };
}

function runRows(r: SizeResult): { headers: string[]; rows: string[][] } {
  const headers = [
    'run',
    'order',
    'etcdctl s',
    'kbur s',
    'ratio',
    'etcdctl MiB/s',
    'kbur MiB/s',
    'coord RSS',
    'agent RSS*',
    'coord CPU s',
    'agent CPU s',
    'etcd CPU s (kbur)',
    'etcdctl CPU s',
    'etcd CPU s (etcdctl)',
  ];
  const rows = r.runs.map((x) => [
    String(x.run),
    x.order,
    fmt(x.etcdctlSeconds),
    fmt(x.kburSeconds),
    fmt(x.ratio, 3),
    fmt(x.etcdctlMiBps, 1),
    fmt(x.kburMiBps, 1),
    `${fmt(x.coordinatorPeakRssMiB, 1)} MiB`,
    `${fmt(x.agentPeakRssMiB, 1)} MiB`,
    fmt(x.cpuSeconds.coordinator),
    fmt(x.cpuSeconds.agent),
    fmt(x.cpuSeconds.etcdDuringKbur),
    fmt(x.cpuSeconds.etcdctl),
    fmt(x.cpuSeconds.etcdDuringEtcdctl),
  ]);
  return { headers, rows };
}

function textReport(report: Report): string {
  const out: string[] = ['', `kbur backup benchmark, ${report.date}`];
  const m = report.machine;
  out.push(
    `machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memGiB} GiB, node ${m.node}, etcd ${m.etcd}, kbur ${m.kbur} ${m.gitCommit ?? ''}`,
    '',
  );
  const s = summaryRows(report);
  out.push(...table(s.headers, s.rows));
  for (const r of report.results) {
    out.push(
      '',
      `${r.sizeMiB} MiB: db ${fmt(r.dbSizeMiB, 1)} MiB on ${r.snapshotNode}, fill ${r.fillSeconds} s (${r.fill?.mibPerSecond} MiB/s), load average ${r.loadAverage.before.join(' ')} -> ${r.loadAverage.after.join(' ')}`,
    );
    if (r.error) out.push(`  ERROR: ${r.error}`);
    if (r.runs.length) {
      const t = runRows(r);
      out.push(...table(t.headers, t.rows).map((l) => `  ${l}`));
    }
    for (const run of r.runs) for (const p of run.problems) out.push(`  run ${run.run}: ${p}`);
  }
  out.push('', '* agent RSS is its VmHWM: the peak over its life, startup included (agents start fresh per size).');
  const failed = report.results.flatMap(failedTargets);
  out.push('', `targets: median ratio <= ${TARGETS.ratioMax}, every process < ${TARGETS.rssMaxMiB} MiB at every size`);
  out.push(failed.length ? `TARGETS MISSED:\n${failed.map((f) => `  - ${f}`).join('\n')}` : 'all targets met');
  return out.join('\n') + '\n';
}

function markdownReport(report: Report): string {
  const m = report.machine;
  const out: string[] = [
    '# kbur backup benchmark',
    '',
    `${report.date}: \`${report.command}\``,
    '',
    `Machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memGiB} GiB RAM, Linux ${m.kernel}, node ${m.node}, etcd ${m.etcd}, etcdctl ${m.etcdctl}, kbur ${m.kbur} ${m.gitCommit ?? ''}`,
    '',
    `Targets: median wall-time ratio kbur/etcdctl at most ${TARGETS.ratioMax}; coordinator and agent peak RSS under ${TARGETS.rssMaxMiB} MiB at every size. Times are medians; RSS is the maximum over runs.`,
    '',
  ];
  const s = summaryRows(report);
  out.push(...markdownTable(s.headers, s.rows));
  for (const r of report.results) {
    out.push('', `## ${r.sizeMiB} MiB`, '');
    out.push(
      `etcd db ${fmt(r.dbSizeMiB, 1)} MiB (snapshotted member ${r.snapshotNode}); fill ${r.fillSeconds} s for ${toMiB(r.fill?.bytesWritten ?? 0)} MiB (${r.fill?.mibPerSecond} MiB/s, ${r.fill?.secondsPerGiB} s per GiB); sandbox start ${r.sandboxStartSeconds} s; warm-up kbur ${fmt(r.warmUp?.kburSeconds)} s; load average ${r.loadAverage.before.join(' ')} before, ${r.loadAverage.after.join(' ')} after.`,
    );
    if (r.members.length)
      out.push(
        '',
        `etcd members after the runs: ${r.members.map((x) => `${x.node} db ${toMiB(x.dbSize)} MiB, RSS ${fmt(x.rssMiB, 0)} MiB (anonymous ${fmt(x.anonRssMiB, 0)} MiB, peak ${fmt(x.peakRssMiB, 0)} MiB)${x.isLeader ? ' leader' : ''}`).join('; ')}.`,
      );
    if (r.error) out.push('', `**ERROR**: ${r.error}`);
    if (r.runs.length) {
      const t = runRows(r);
      out.push('', ...markdownTable(t.headers, t.rows));
    }
    for (const run of r.runs) for (const p of run.problems) out.push('', `- run ${run.run}: ${p}`);
  }
  const failed = report.results.flatMap(failedTargets);
  out.push('', '## Result', '', failed.length ? failed.map((f) => `- missed: ${f}`).join('\n') : 'All targets met.');
  out.push('', '## Method', '', ...METHOD.map((x) => `- ${x}`), '');
  return out.join('\n');
}

async function writeReport(report: Report, out: string): Promise<void> {
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, JSON.stringify(report, null, 2) + '\n');
  await writeFile(out.replace(/\.json$/, '') + '.md', markdownReport(report));
}

// ---------------------------------------------------------------------------------------------

interface State {
  abort: AbortController;
  sandbox: Sandbox | undefined;
}

async function stopSandbox(state: State): Promise<void> {
  const sandbox = state.sandbox;
  state.sandbox = undefined;
  if (!sandbox) return;
  try {
    await sandbox.stop();
  } catch (err) {
    log(`stopping the sandbox failed: ${(err as Error).message}`);
  }
}

/** Anything the bench started and that outlived the sandbox's stop (should be nothing). */
function killLeftovers(): void {
  const left = descendants(process.pid).filter((pid) => procArgv(pid).length > 0);
  for (const pid of left) {
    log(`killing leftover process ${pid}: ${procArgv(pid).join(' ').slice(0, 200)}`);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = options(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const state: State = { abort: new AbortController(), sandbox: undefined };
  let signals = 0;
  /** The temporary root, to remove even on a forced exit. */
  let ownTemp: string | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    if (signals === 1) {
      log(`${sig}: stopping the benchmark, the sandbox and every process it started (${sig} again to exit at once)`);
      state.abort.abort(new Error(`interrupted by ${sig}`));
      for (const child of running) child.kill('SIGTERM');
    } else {
      killLeftovers();
      if (ownTemp) rmSync(ownTemp, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);

  const ownRoot = opts.root === undefined;
  const root = opts.root ?? (await mkdtemp(join(tmpdir(), 'kbur-bench-')));
  await mkdir(root, { recursive: true });
  if (ownRoot && !opts.keep) ownTemp = root;
  const report: Report = {
    date: new Date().toISOString(),
    command: ['node', 'dist/scripts/bench.js', ...process.argv.slice(2)].join(' '),
    machine: await machineInfo(),
    method: METHOD,
    results: [],
  };
  log(`sizes ${opts.sizes.join(', ')} MiB, ${opts.runs} runs each; root ${root}; results ${opts.out}`);
  let failed = false;
  try {
    for (const sizeMiB of opts.sizes) {
      const dir = join(root, `size-${sizeMiB}MiB`);
      try {
        report.results.push(await benchSize(sizeMiB, opts, dir, state));
      } catch (err) {
        if (state.abort.signal.aborted) throw state.abort.signal.reason;
        failed = true;
        const message = (err as Error).message;
        log(`${sizeMiB} MiB: FAILED: ${message}`);
        if (!opts.keep) log(`${sizeMiB} MiB: rerun with --keep to keep the sandbox's logs (${join(dir, 'logs')})`);
        report.results.push({
          sizeMiB,
          quotaBackendBytes: 0,
          dbSizeBytes: 0,
          dbSizeMiB: 0,
          members: [],
          snapshotNode: '',
          sandboxStartSeconds: 0,
          fillSeconds: 0,
          fill: undefined!,
          warmUp: undefined,
          loadAverage: { before: [], after: loadavg().map((x) => round(x, 2)) },
          runs: [],
          median: undefined,
          max: undefined,
          targets: TARGETS,
          pass: { ratio: false, rss: false, coordinatorRss: false, agentRss: false, snapshotsMatch: false },
          error: message,
        });
      } finally {
        if (state.sandbox) log(`${sizeMiB} MiB: stopping the sandbox`);
        await stopSandbox(state);
        if (!opts.keep) await rm(dir, { recursive: true, force: true });
      }
      await writeReport(report, opts.out);
    }
  } catch (err) {
    log(`stopped: ${(err as Error).message}`);
    return 130;
  } finally {
    await stopSandbox(state);
    killLeftovers();
    if (ownRoot && !opts.keep) await rm(root, { recursive: true, force: true });
    else if (opts.keep) log(`kept ${root}`);
  }
  process.stdout.write(textReport(report));
  log(`wrote ${opts.out} and ${opts.out.replace(/\.json$/, '')}.md`);
  return failed ? 1 : 0;
}

process.exitCode = await main();

/**
 * The backup benchmark (issue acceptance): for each etcd size, a fresh sandbox (3-member TLS etcd,
 * real kbur agents) filled to that size, then, from the member kbur snapshots, `etcdctl snapshot
 * save` and `kbur backup` timed in alternating order. Reports the wall-time ratio kbur/etcdctl and
 * the peak RSS of the coordinator (kbur CLI) and of the agent that streamed the snapshot.
 *
 * Then the restore benchmark (RTO) for each --restore-sizes, on the backup benchmark's sandbox of
 * that size (else a fresh one filled the same way): two kept `kbur backup`s, the first without and
 * the second with backup.copySnapshotToNodes, restored in each run by etcd's documented manual
 * procedure, by `kbur restore --yes` of the second (staged from the copies on the nodes) and of the
 * first (snapshot uploaded), the three in rotation, each restored cluster checked. Target: median
 * kbur/manual at most 1.3 with the copies on the nodes; the upload is reported beside it. See RESTORE_METHOD.
 *
 *   npm run bench                                  backup 300 MiB and 1536 MiB, restore 300 MiB, 5 runs each
 *   node dist/scripts/bench.js [--sizes 300,1536|none] [--restore-sizes 300|none] [--runs 5]
 *                              [--out bench-results/backup.json] [--root DIR] [--keep] [--network 127.0.2]
 *   node dist/scripts/bench.js --sizes none --restore-sizes 300      the restore benchmark alone
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
import { mkdir, mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs, promisify } from 'node:util';
import { Etcd3 } from 'etcd3';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import type { Manifest } from '../shared/manifest.js';
import { KBUR_VERSION } from '../shared/version.js';
import { KBUR_BIN } from '../test/helpers/kbur.js';
import { createSandbox, waitForEtcdHealthy, type Sandbox, type SandboxNode } from '../test/sandbox/cluster.js';
import { NODE_FLAGS } from '../shared/process.js';
import { STEPS } from '../coordinator/restore/journal.js';
import type { NodeCopy } from '../coordinator/backup/copies.js';

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
  /** Sizes of the restore benchmark (RTO), MiB; empty with --restore-sizes none. */
  restoreSizes: number[];
  runs: number;
  out: string;
  root: string | undefined;
  keep: boolean;
  network: string;
}

const USAGE = `usage: node dist/scripts/bench.js [--sizes 300,1536|none] [--restore-sizes 300|none] [--runs 5] [--out bench-results/backup.json] [--root DIR] [--keep] [--network 127.0.2]`;

/** A list of sizes in MiB, or none. */
function parseSizes(flag: string, text: string): number[] {
  if (text.trim() === 'none') return [];
  const sizes = text.split(',').map((s) => Number(s.trim()));
  if (sizes.length === 0 || sizes.some((s) => !Number.isInteger(s) || s < 1))
    throw new Error(`${flag}: expected MiB as integers, e.g. 300,1536, or none; got ${text}`);
  if (sizes.some((s) => s * MiB > ETCD_MAX_QUOTA - GiB))
    throw new Error(`${flag}: etcd's quota is at most 8 GiB, so sizes up to 7168 MiB; got ${text}`);
  return [...new Set(sizes)];
}

function options(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      sizes: { type: 'string', default: '300,1536' },
      'restore-sizes': { type: 'string', default: '300' },
      // 5, not 3: on a shared 2-core VM one run's ratio moves by 0.05-0.1, and a median of 3 with it.
      runs: { type: 'string', default: '5' },
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
  const sizes = parseSizes('--sizes', values.sizes);
  const restoreSizes = parseSizes('--restore-sizes', values['restore-sizes']);
  if (sizes.length === 0 && restoreSizes.length === 0) throw new Error('--sizes none and --restore-sizes none: nothing to measure');
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs: expected a positive integer, got ${values.runs}`);
  if (!/^\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(values.network))
    throw new Error(`--network: expected three octets like 127.0.2, got ${values.network}`);
  return {
    sizes,
    restoreSizes,
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

/**
 * Runs one process to its exit, polling its RSS and CPU. `onLine` gets every stdout line as it
 * arrives, with the seconds since the spawn.
 */
async function measure(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  signal: AbortSignal,
  onLine?: (line: string, seconds: number) => void,
): Promise<Measured> {
  signal.throwIfAborted();
  const t0 = performance.now();
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  running.add(child);
  let stdout = '';
  let stderr = '';
  let partial = '';
  child.stdout.on('data', (d: Buffer) => {
    const text = d.toString();
    stdout += text;
    if (!onLine) return;
    const t = (performance.now() - t0) / 1000;
    const lines = (partial + text).split('\n');
    partial = lines.pop()!;
    for (const line of lines) onLine(line, t);
  });
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
    if (onLine && partial) onLine(partial, (performance.now() - t0) / 1000);
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
  /** Where each node keeps its copy of the snapshot: only with backup.copySnapshotToNodes in the config. */
  nodeCopies: NodeCopy[] | undefined;
}

/** kbur backup --json; its backup folder is removed once its manifest is read, unless `keep`. */
async function kburBackup(sandbox: Sandbox, signal: AbortSignal, keep = false, config = sandbox.coordinatorConfig): Promise<KburOutcome> {
  const measured = await measure(process.execPath, [...NODE_FLAGS, KBUR_BIN, '--config', config, 'backup', '--json'], process.env, signal);
  let manifest: Manifest & { nodeCopies?: NodeCopy[] };
  try {
    manifest = JSON.parse(measured.stdout) as Manifest & { nodeCopies?: NodeCopy[] };
  } catch {
    throw failure('kbur backup --json (no manifest on stdout)', measured);
  }
  if (!keep) await rm(join(sandbox.repoDir, manifest.cluster, 'backups', manifest.id), { recursive: true, force: true });
  if (measured.code !== 0 || manifest.phase !== 'Completed') {
    const why = manifest.failures.map((f) => `${f.part}: ${f.message}`).join('; ');
    throw new Error(`kbur backup exited ${measured.code ?? measured.signal} with phase ${manifest.phase}${why ? `: ${why}` : ''}`);
  }
  const snapshot = manifest.artifacts.find((a) => a.kind === 'etcd-snapshot');
  if (!manifest.etcd || !snapshot) throw new Error('kbur backup is Completed but has no etcd snapshot in its manifest');
  return { measured, manifest, snapshotBytes: snapshot.size, nodeCopies: manifest.nodeCopies };
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

/** A sandbox of one size, as both benchmarks use it: started, agents up, filled. */
interface FilledSandbox {
  sandbox: Sandbox;
  sizeMiB: number;
  quota: number;
  sandboxStartSeconds: number;
  fill: Fill;
}

/** A fresh sandbox with its agents, filled to `sizeMiB` (every member); it is `state.sandbox` from its start. */
async function startFilledSandbox(sizeMiB: number, opts: Options, dir: string, state: State): Promise<FilledSandbox> {
  const signal = state.abort.signal;
  const targetBytes = sizeMiB * MiB;
  const quota = Math.min(ETCD_MAX_QUOTA, 2 * targetBytes + GiB);
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
  return { sandbox, sizeMiB, quota, sandboxStartSeconds, fill };
}

/** The backup benchmark of one size; the filled sandbox is left running (in `state.sandbox`) for the restore benchmark. */
async function benchSize(
  sizeMiB: number,
  opts: Options,
  dir: string,
  state: State,
  onFilled: (f: FilledSandbox) => void,
): Promise<SizeResult> {
  const signal = state.abort.signal;
  const loadBefore = loadavg().map((x) => round(x, 2));
  const filled = await startFilledSandbox(sizeMiB, opts, dir, state);
  onFilled(filled);
  const { sandbox, quota, sandboxStartSeconds, fill } = filled;

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
// Restore (RTO): kbur restore against etcd's documented manual procedure

/** Which kbur restore the target applies to: the backup whose snapshot every node keeps a copy of. */
const RESTORE_TARGETS = { ratioMax: 1.3, kburMode: 'copies' } as const;
const HEALTHY_TIMEOUT_MS = 120_000;
/** The control-plane containers of a sandbox node, as the kubelet stand-in names them. */
const CONTAINERS = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler'];
/** Where the manual procedure puts things: beside manifests/, in the node's dir, beside the data dir. */
const MANUAL = {
  heldDir: 'bench-manual-held',
  copyDir: 'bench-manual',
  newSuffix: '.bench-manual-new',
  oldSuffix: '.bench-manual-old',
} as const;
const MANUAL_STEPS = ['copy', 'stop', 'restore', 'swap', 'start'] as const;
type ManualStep = (typeof MANUAL_STEPS)[number];
/** kbur restore's phases as its stdout shows them: preflight until `restore <id> started;`, then one per step, then the exit. */
const KBUR_STEPS = ['preflight', ...STEPS, 'exit'] as const;
type KburStep = (typeof KBUR_STEPS)[number];
/**
 * The two kbur restores of every run: `copies` restores a backup taken with
 * backup.copySnapshotToNodes (each node stages its own copy), `upload` one taken without (the
 * coordinator uploads the snapshot to every node).
 */
const KBUR_MODES = ['copies', 'upload'] as const;
type KburMode = (typeof KBUR_MODES)[number];
const KBUR_MODE_TEXT: Record<KburMode, string> = { copies: 'kbur, copies on the nodes', upload: 'kbur, snapshot uploaded' };
/** The procedures of a run; run i starts at the i-th (mod 3) and goes round. */
const RESTORE_PROCEDURES = ['manual', ...KBUR_MODES] as const;
type RestoreProcedure = (typeof RESTORE_PROCEDURES)[number];
/** The coordinator config beside the sandbox's kbur.yaml with backup.copySnapshotToNodes on. */
const COPIES_CONFIG = 'kbur-copies.yaml';

/** One `kbur restore --yes` of a run. */
interface KburRestoreRunResult {
  backupId: string;
  restoreId: string;
  seconds: number;
  /** This kbur restore / the manual procedure of the same run. */
  ratio: number;
  /** From kbur's first `stop <node>:` line to its `verify:` line. */
  downtimeSeconds: number;
  /** From kbur's spawn to its last `verify-staged <node>:` line: preflight, plan, staging and its recheck. */
  preStopSeconds: number;
  /** From that line (the stop step starts then) to the `verify:` line: the downtime including the followers' stop. */
  stopToVerifySeconds: number;
  coordinatorPeakRssMiB: number;
  /** The agents' VmHWM after the run: the peak over their lives (backup runs included when the sandbox is reused). */
  agentPeakRssMiB: number;
  cpuSeconds: {
    coordinator: number;
    /** The three agents' own utime+stime. */
    agents: number;
    /** What the agents' finished children used (etcdctl snapshot restore, du...). */
    agentChildren: number;
  };
  steps: Partial<Record<KburStep, number>>;
  /** Where each node's snapshot was staged from, as its `stage <node>:` line says. */
  stagedFrom: Record<string, 'copy' | 'upload'>;
  /** When each of kbur's step lines arrived, seconds after its spawn. */
  lines: { t: number; line: string }[];
  check: string;
}

interface RestoreRunResult {
  run: number;
  /** The procedures in the order they ran. */
  order: RestoreProcedure[];
  manual: {
    seconds: number;
    steps: Record<ManualStep, number>;
    cpuSeconds: { etcdctl: number; cp: number };
    check: string;
  };
  kbur: Record<KburMode, KburRestoreRunResult>;
  problems: string[];
}

type KburRestoreSummary = Record<
  'seconds' | 'ratio' | 'downtimeSeconds' | 'preStopSeconds' | 'stopToVerifySeconds' | 'coordinatorPeakRssMiB',
  number
> & {
  cpuSeconds: KburRestoreRunResult['cpuSeconds'];
  steps: Partial<Record<KburStep, number>>;
};

interface RestoreSummary {
  manual: { seconds: number; steps: Record<ManualStep, number>; cpuSeconds: RestoreRunResult['manual']['cpuSeconds'] };
  kbur: Record<KburMode, KburRestoreSummary>;
}

/** A kept backup that the runs restore. */
interface RestoreBackup {
  id: string;
  /** The coordinator config of its `kbur backup` and `kbur restore`. */
  config: string;
  seconds: number;
  coordinatorPeakRssMiB: number;
  node: string;
  snapshotBytes: number;
  snapshotMiB: number;
  revision: number;
  keyCount: number;
  registryKeyCount: number;
  /** The backup's `nodeCopies` (copies mode): where each agent keeps its copy. */
  nodeCopies?: NodeCopy[];
}

interface RestoreSizeResult {
  sizeMiB: number;
  sandbox: 'reused from the backup runs' | 'fresh';
  quotaBackendBytes: number;
  sandboxStartSeconds: number;
  fillSeconds: number;
  /** `upload` is taken first, then `copies` (the copies the agents keep are of the newest backup). */
  backups: Partial<Record<KburMode, RestoreBackup>>;
  loadAverage: { before: number[]; after: number[] };
  runs: RestoreRunResult[];
  median: RestoreSummary | undefined;
  max: { coordinatorPeakRssMiB: Record<KburMode, number>; agentPeakRssMiB: number } | undefined;
  targets: typeof RESTORE_TARGETS;
  /** `ratio` is the target's, on the copies mode. */
  pass: { ratio: boolean; checks: boolean };
  error?: string;
}

interface RestoreSection {
  targets: typeof RESTORE_TARGETS;
  method: string[];
  results: RestoreSizeResult[];
}

/** utime+stime of a process's finished (waited-for) children, in seconds. */
function procChildrenCpuSeconds(pid: number): number | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[13]) + Number(rest[14])) / CLK_TCK;
  } catch {
    return undefined;
  }
}

/** waitForEtcdHealthy, in slices, so that Ctrl-C is not left waiting for the whole timeout. */
async function waitHealthy(sandbox: Sandbox, signal: AbortSignal, timeoutMs = HEALTHY_TIMEOUT_MS): Promise<void> {
  const endpoints = sandbox.nodes.map((n) => n.clientUrl);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    signal.throwIfAborted();
    try {
      return await waitForEtcdHealthy(sandbox, endpoints, Math.max(0, Math.min(5_000, deadline - Date.now())));
    } catch (err) {
      if (Date.now() >= deadline) throw err;
    }
  }
}

/** Keys in the whole keyspace and under /registry/, read from this member only (serializable). */
async function keyCounts(sandbox: Sandbox, node: SandboxNode): Promise<{ total: number; registry: number }> {
  const count = async (range: string[]): Promise<number> => {
    const out = await sandbox.etcdctl(['get', ...range, '--keys-only', '--limit=1', '--consistency=s', '-w', 'json'], {
      endpoints: [node.clientUrl],
    });
    // `count` is the size of the whole range, whatever the limit; etcd omits it when 0.
    return Number((JSON.parse(out) as { count?: number }).count ?? 0);
  };
  const [total, registry] = await Promise.all([count(['', '--from-key']), count(['/registry/', '--prefix'])]);
  return { total, registry };
}

/** The cluster id each member reports, and the member list as name=peerURLs, sorted. */
async function clusterIdentity(sandbox: Sandbox): Promise<{ clusterIds: string[]; members: string[] }> {
  const [status, list] = await Promise.all([
    sandbox.etcdctl(['endpoint', 'status', '-w', 'json']),
    sandbox.etcdctl(['member', 'list', '-w', 'json']),
  ]);
  const clusterIds = [...status.matchAll(/"cluster_id":(\d+)/g)].map((m) => m[1]!);
  const members =
    (JSON.parse(list.replace(/"(ID|member_id|cluster_id)":(\d+)/g, '"$1":"$2"')) as { members?: { name: string; peerURLs: string[] }[] })
      .members ?? [];
  return { clusterIds, members: members.map((m) => `${m.name}=${[...m.peerURLs].sort().join(',')}`).sort() };
}

async function etcdLeader(sandbox: Sandbox): Promise<string | undefined> {
  return (await endpointStatus(sandbox)).find((s) => s.isLeader)?.node;
}

/** What a restore left beside the data dirs, in the state dirs (restores/ only) and beside manifests/. */
async function leftovers(sandbox: Sandbox): Promise<string[]> {
  const found: string[] = [];
  for (const n of sandbox.nodes) {
    const base = basename(n.dataDir);
    for (const e of await readdir(dirname(n.dataDir)).catch(() => [] as string[]))
      if (e.startsWith(`${base}.`) || e === MANUAL.copyDir) found.push(join(dirname(n.dataDir), e));
    for (const e of await readdir(n.kubernetesDir).catch(() => [] as string[]))
      if (e.startsWith('kbur-held-') || e.startsWith('kubernetes.kbur-') || e === MANUAL.heldDir) found.push(join(n.kubernetesDir, e));
    for (const e of await readdir(join(n.stateDir, 'restores')).catch(() => [] as string[])) found.push(join(n.stateDir, 'restores', e));
  }
  return found;
}

/**
 * Deletes what a finished restore leaves (old data dirs <dataDir>.kbur-<id> and the manual
 * procedure's, staged snapshots, the manual procedure's copies of the snapshot, empty held folders)
 * and kbur's journals. Only called once the cluster was checked healthy on its restored data: never
 * the live data dir, never the snapshot copies the agents keep (<stateDir>/snapshots/, which the
 * copies mode restores from in every run; a staged snapshot is a hard link to one, deleting it
 * leaves the copy whole).
 */
async function removeLeftovers(sandbox: Sandbox, cluster: string): Promise<void> {
  const within = (path: string, dir: string): boolean => path === dir || path.startsWith(`${dir}/`) || dir.startsWith(`${path}/`);
  for (const path of await leftovers(sandbox)) {
    if (sandbox.nodes.some((n) => path === n.dataDir)) throw new Error(`refusing to delete the live data dir ${path}`);
    if (sandbox.nodes.some((n) => within(path, localCopies(n))))
      throw new Error(`refusing to delete ${path}: the snapshot copies an agent keeps are in it`);
    await rm(path, { recursive: true, force: true });
  }
  await rm(join(sandbox.repoDir, cluster, 'restores'), { recursive: true, force: true });
}

/** Where a node's agent keeps its snapshot copies (see agent/local-snapshots.ts). */
function localCopies(n: SandboxNode): string {
  return join(n.stateDir, 'snapshots');
}

/**
 * The sandbox's kbur.yaml with backup.copySnapshotToNodes on, written beside it. Its paths are the
 * sandbox's, absolute: the copy works from any directory.
 */
async function writeCopiesConfig(sandbox: Sandbox): Promise<string> {
  const config = parseYaml(await readFile(sandbox.coordinatorConfig, 'utf8')) as Record<string, unknown>;
  if ('backup' in config) throw new Error(`${sandbox.coordinatorConfig} already has a backup: section; the bench sets it itself`);
  const to = join(dirname(sandbox.coordinatorConfig), COPIES_CONFIG);
  await writeFile(to, stringifyYaml({ ...config, backup: { copySnapshotToNodes: true } }), { mode: 0o600 });
  return to;
}

/** Every node keeps the copy of `backup` that its `kbur backup` reported, whole in size. */
async function assertCopiesKept(sandbox: Sandbox, backup: RestoreBackup): Promise<void> {
  const missing: string[] = [];
  for (const n of sandbox.nodes) {
    const path = join(localCopies(n), `${backup.id}.db`);
    const size = await stat(path).then(
      (s) => s.size,
      () => undefined,
    );
    if (size !== backup.snapshotBytes) missing.push(`${n.name}: ${path} ${size === undefined ? 'is missing' : `has ${size} bytes`}`);
  }
  if (missing.length)
    throw new Error(`the snapshot copies of backup ${backup.id} (${backup.snapshotBytes} bytes) are not all kept: ${missing.join('; ')}`);
}

/** The cluster as before any restore: every manifest in place and its container running, etcd healthy, nothing left over. */
async function assertNormal(sandbox: Sandbox, signal: AbortSignal): Promise<void> {
  for (const n of sandbox.nodes) {
    const manifests = await readdir(n.manifestsDir);
    for (const c of CONTAINERS) {
      if (!manifests.includes(`${c}.yaml`)) throw new Error(`${n.name}: ${c}.yaml is not in ${n.manifestsDir}`);
      await sandbox.kubelet.waitFor(n.name, c, 'running', 10_000);
    }
  }
  const left = await leftovers(sandbox);
  if (left.length) throw new Error(`left over from a restore: ${left.join(', ')}`);
  await waitHealthy(sandbox, signal);
}

/**
 * After a restore: all members healthy, in a new cluster (not `clusterIdBefore`) with the same
 * members, and on every member the backup's key count. Returns the problems and a summary.
 */
async function checkRestored(
  sandbox: Sandbox,
  want: { clusterIdBefore: string; members: string[]; keyCount: number; registryKeyCount: number },
  signal: AbortSignal,
): Promise<{ problems: string[]; summary: string }> {
  await waitHealthy(sandbox, signal);
  const problems: string[] = [];
  const id = await clusterIdentity(sandbox);
  const ids = new Set(id.clusterIds);
  if (id.clusterIds.length !== sandbox.nodes.length || ids.size !== 1)
    problems.push(`members report cluster ids ${id.clusterIds.join(', ')}`);
  if (ids.has(want.clusterIdBefore)) problems.push(`cluster id ${want.clusterIdBefore} did not change: no new cluster was bootstrapped`);
  if (id.members.join(' ') !== want.members.join(' ')) problems.push(`members ${id.members.join(' ')}, expected ${want.members.join(' ')}`);
  const counts = await Promise.all(sandbox.nodes.map((n) => keyCounts(sandbox, n)));
  counts.forEach((c, i) => {
    const node = sandbox.nodes[i]!.name;
    if (c.total !== want.keyCount) problems.push(`${node}: ${c.total} keys, the backup has ${want.keyCount}`);
    if (c.registry !== want.registryKeyCount)
      problems.push(`${node}: ${c.registry} keys under /registry/, ${want.registryKeyCount} after the backup`);
  });
  const summary = `healthy, new cluster ${[...ids].map((x) => BigInt(x).toString(16)).join(',')}, ${id.members.length} members, keys ${counts.map((c) => `${c.total} (/registry/ ${c.registry})`).join(' / ')}`;
  return { problems, summary };
}

interface ManualOutcome {
  seconds: number;
  steps: Record<ManualStep, number>;
  etcdctlCpuSeconds: number;
  cpCpuSeconds: number;
}

/**
 * etcd's recovery guide for a kubeadm static-pod cluster, by hand: the snapshot copied to every
 * node, etcd stopped by moving its manifest out, `etcdctl snapshot restore` of every member in
 * parallel into a new dir, the data dirs swapped, the manifests moved back, until all are healthy.
 * The leader is stopped last (as kbur and the sandbox do): stopped while its followers stop too,
 * it waits ~7 s for a leadership transfer that cannot happen.
 */
async function manualRestore(sandbox: Sandbox, snapshot: string, leader: string | undefined, signal: AbortSignal): Promise<ManualOutcome> {
  const nodes = sandbox.nodes;
  const token = `bench-manual-${randomBytes(4).toString('hex')}`;
  const initialCluster = nodes.map((n) => `${n.name}=${n.peerUrl}`).join(',');
  const steps = {} as Record<ManualStep, number>;
  const t0 = performance.now();
  let mark = t0;
  const lap = (step: ManualStep): void => {
    const now = performance.now();
    steps[step] = round((now - mark) / 1000);
    mark = now;
  };

  // 1. The snapshot onto every node (an operator scp's it).
  const copies = await Promise.all(
    nodes.map(async (n) => {
      const dir = join(n.dir, MANUAL.copyDir);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const to = join(dir, 'snapshot.db');
      const m = await measure('cp', [snapshot, to], ETCDCTL_ENV, signal);
      if (m.code !== 0) throw failure(`cp ${snapshot} ${to}`, m);
      return { to, cpu: m.cpuSeconds };
    }),
  );
  lap('copy');

  // 2. etcd stopped: its manifest out of manifests/.
  const held = (n: SandboxNode): string => join(n.kubernetesDir, MANUAL.heldDir, 'etcd.yaml');
  const groups = leader ? [nodes.filter((n) => n.name !== leader), nodes.filter((n) => n.name === leader)] : [nodes];
  for (const group of groups) {
    await Promise.all(
      group.map(async (n) => {
        await mkdir(dirname(held(n)), { recursive: true, mode: 0o700 });
        await rename(join(n.manifestsDir, 'etcd.yaml'), held(n));
        await sandbox.kubelet.waitFor(n.name, 'etcd', 'stopped');
      }),
    );
  }
  lap('stop');

  // 3. Every member restored from its copy, in parallel, into a new dir.
  const restores = await Promise.all(
    nodes.map(async (n, i) => {
      const args = [
        'snapshot',
        'restore',
        copies[i]!.to,
        '--name',
        n.name,
        '--initial-cluster',
        initialCluster,
        '--initial-cluster-token',
        token,
        '--initial-advertise-peer-urls',
        n.peerUrl,
        '--data-dir',
        `${n.dataDir}${MANUAL.newSuffix}`,
      ];
      const m = await measure('etcdctl', args, ETCDCTL_ENV, signal);
      if (m.code !== 0) throw failure(`etcdctl snapshot restore on ${n.name}`, m);
      return m;
    }),
  );
  lap('restore');

  // 4. The old data dir aside, the restored one in its place.
  await Promise.all(
    nodes.map(async (n) => {
      await rename(n.dataDir, `${n.dataDir}${MANUAL.oldSuffix}`);
      await rename(`${n.dataDir}${MANUAL.newSuffix}`, n.dataDir);
    }),
  );
  lap('swap');

  // 5. The manifests back; wait until every member answers.
  await Promise.all(nodes.map((n) => rename(held(n), join(n.manifestsDir, 'etcd.yaml'))));
  await waitHealthy(sandbox, signal);
  lap('start');
  return {
    seconds: (performance.now() - t0) / 1000,
    steps,
    etcdctlCpuSeconds: restores.reduce((a, m) => a + m.cpuSeconds, 0),
    cpCpuSeconds: copies.reduce((a, c) => a + c.cpu, 0),
  };
}

interface KburRestoreOutcome {
  measured: Measured;
  restoreId: string;
  downtimeSeconds: number;
  preStopSeconds: number;
  stopToVerifySeconds: number;
  steps: Partial<Record<KburStep, number>>;
  stagedFrom: Record<string, 'copy' | 'upload'>;
  lines: { t: number; line: string }[];
  agentCpu: number;
  agentChildrenCpu: number;
  agentHwmKiB: number;
}

/**
 * Where a `stage <node>:` line says the node's snapshot came from: its own copy (`staged <path> from
 * the copy this node keeps`) or the repository (`staged <path> (<n> bytes uploaded, ...)`);
 * undefined for any other line, e.g. `its copy cannot be used (...); uploading ... instead`.
 */
function stageSource(line: string): 'copy' | 'upload' | undefined {
  if (/^stage \S+: staged \S+ from the copy this node keeps\b/.test(line)) return 'copy';
  if (/^stage \S+: staged \S+ \(\d+ bytes uploaded\b/.test(line)) return 'upload';
  return undefined;
}

/** `kbur restore <backup> --yes`, timed from spawn to exit, with the time of each of its step lines. */
async function kburRestore(
  sandbox: Sandbox,
  config: string,
  backupId: string,
  agentPids: number[],
  signal: AbortSignal,
): Promise<KburRestoreOutcome> {
  const nodeNames = new Set(sandbox.nodes.map((n) => n.name));
  const lines: { t: number; line: string }[] = [];
  let restoreId = '';
  const onLine = (line: string, t: number): void => {
    const started = /^restore (\S+) started;/.exec(line);
    if (started) {
      restoreId = started[1]!;
      lines.push({ t, line });
      return;
    }
    const m = /^([a-z-]+) (\S+): /.exec(line);
    if ((m && nodeNames.has(m[2]!) && (KBUR_STEPS as readonly string[]).includes(m[1]!)) || /^(wait-quorum|verify): /.test(line))
      lines.push({ t, line });
  };
  const cpu = (): [number, number] => [
    agentPids.reduce((a, p) => a + (procCpuSeconds(p) ?? NaN), 0),
    agentPids.reduce((a, p) => a + (procChildrenCpuSeconds(p) ?? NaN), 0),
  ];
  const [own0, children0] = cpu();
  const measured = await measure(
    process.execPath,
    [...NODE_FLAGS, KBUR_BIN, '--config', config, 'restore', backupId, '--yes'],
    process.env,
    signal,
    onLine,
  );
  const [own1, children1] = cpu();
  if (measured.code !== 0) {
    const out = measured.stdout.trim().split('\n').slice(-5).join('\n');
    const err = failure('kbur restore', measured);
    throw new Error(`${err.message}${out ? `\nlast lines of its stdout:\n${out}` : ''}`);
  }
  if (!restoreId) throw new Error('kbur restore exited 0 but never printed "restore <id> started;"');

  const stepOf = (line: string): KburStep | undefined =>
    /^restore \S+ started;/.test(line) ? 'preflight' : (/^([a-z-]+)[ :]/.exec(line)?.[1] as KburStep | undefined);
  const lastOf = (step: KburStep): number | undefined => lines.filter((l) => stepOf(l.line) === step).at(-1)?.t;
  const firstOf = (step: KburStep): number | undefined => lines.find((l) => stepOf(l.line) === step)?.t;
  const steps: Partial<Record<KburStep, number>> = {};
  let previous = 0;
  for (const step of KBUR_STEPS) {
    const end = step === 'exit' ? measured.seconds : lastOf(step);
    if (end === undefined) continue;
    steps[step] = round(end - previous);
    previous = end;
  }
  const firstStop = firstOf('stop');
  const verified = lastOf('verify');
  const preStop = lastOf('verify-staged');
  if (firstStop === undefined || verified === undefined || preStop === undefined)
    throw new Error(`kbur restore exited 0 but its output lacks a stop, verify-staged or verify line:\n${measured.stdout.slice(-2000)}`);
  // A node whose copy could not be used says so, then is uploaded to: its last stage line decides.
  const stagedFrom: Record<string, 'copy' | 'upload'> = {};
  for (const node of nodeNames) {
    const source = stageSource(lines.filter((l) => l.line.startsWith(`stage ${node}: `)).at(-1)?.line ?? '');
    if (source) stagedFrom[node] = source;
  }
  return {
    measured,
    restoreId,
    downtimeSeconds: verified - firstStop,
    preStopSeconds: preStop,
    stopToVerifySeconds: verified - preStop,
    steps,
    stagedFrom,
    lines: lines.map((l) => ({ t: round(l.t), line: l.line.slice(0, 300) })),
    agentCpu: own1 - own0,
    agentChildrenCpu: children1 - children0,
    agentHwmKiB: Math.max(...agentPids.map((p) => procStatusKiB(p, 'VmHWM') ?? NaN)),
  };
}

/**
 * The run fails unless every node was staged as `mode` means: from its own copy (copies), or by
 * the upload (upload). A copies restore that fell back to the upload must not be reported as one.
 */
function assertStaged(mode: KburMode, got: KburRestoreOutcome, nodes: SandboxNode[]): void {
  const want = mode === 'copies' ? 'copy' : 'upload';
  const wrong = nodes.filter((n) => got.stagedFrom[n.name] !== want);
  if (wrong.length === 0) return;
  const how = (node: string): string => {
    const from = got.stagedFrom[node];
    return from === undefined ? `${node} has no "staged" line` : `${node} was staged ${from === 'copy' ? 'from its copy' : 'by upload'}`;
  };
  const stageLines = got.lines.filter((l) => l.line.startsWith('stage ')).map((l) => `  ${l.line}`);
  throw new Error(
    `${KBUR_MODE_TEXT[mode]}: restore ${got.restoreId} exited 0, but ${wrong.map((n) => how(n.name)).join(', ')}; ` +
      `every node must be staged ${want === 'copy' ? 'from the copy it keeps' : 'by upload'}. Its stage lines:\n${stageLines.join('\n')}`,
  );
}

function summarizeRestore(runs: RestoreRunResult[]): RestoreSummary | undefined {
  if (runs.length === 0) return undefined;
  const m = (f: (r: RestoreRunResult) => number, digits = 3): number => round(median(runs.map(f)), digits);
  const kbur = (mode: KburMode): KburRestoreSummary => {
    const k = (f: (x: KburRestoreRunResult) => number, digits = 3): number => m((r) => f(r.kbur[mode]), digits);
    const steps: Partial<Record<KburStep, number>> = {};
    for (const step of KBUR_STEPS) {
      const xs = runs.map((r) => r.kbur[mode].steps[step]).filter((x): x is number => x !== undefined);
      if (xs.length) steps[step] = round(median(xs));
    }
    return {
      seconds: k((x) => x.seconds),
      ratio: k((x) => x.ratio),
      downtimeSeconds: k((x) => x.downtimeSeconds),
      preStopSeconds: k((x) => x.preStopSeconds),
      stopToVerifySeconds: k((x) => x.stopToVerifySeconds),
      coordinatorPeakRssMiB: k((x) => x.coordinatorPeakRssMiB, 1),
      cpuSeconds: {
        coordinator: k((x) => x.cpuSeconds.coordinator, 2),
        agents: k((x) => x.cpuSeconds.agents, 2),
        agentChildren: k((x) => x.cpuSeconds.agentChildren, 2),
      },
      steps,
    };
  };
  return {
    manual: {
      seconds: m((r) => r.manual.seconds),
      steps: Object.fromEntries(MANUAL_STEPS.map((s) => [s, m((r) => r.manual.steps[s])])) as Record<ManualStep, number>,
      cpuSeconds: { etcdctl: m((r) => r.manual.cpuSeconds.etcdctl, 2), cp: m((r) => r.manual.cpuSeconds.cp, 2) },
    },
    kbur: { copies: kbur('copies'), upload: kbur('upload') },
  };
}

/** A kept backup, as the runs restore it. */
interface KeptBackup {
  info: RestoreBackup;
  manifest: Manifest;
  /** The snapshot in the repository. */
  snapshot: string;
}

/**
 * `kbur backup --json` with `config`, kept. For the copies mode, every node must report its copy
 * kept (nodeCopies[].ok) and hold it; for the upload mode, no node may have been sent one.
 */
async function takeRestoreBackup(
  sizeMiB: number,
  sandbox: Sandbox,
  mode: KburMode,
  config: string,
  signal: AbortSignal,
): Promise<KeptBackup> {
  log(
    `${sizeMiB} MiB restore: taking the backup for "${KBUR_MODE_TEXT[mode]}" (kbur --config ${basename(config)} backup --json, kept${mode === 'copies' ? '; backup.copySnapshotToNodes: true' : ''})`,
  );
  const backup = await kburBackup(sandbox, signal, true, config);
  const manifest = backup.manifest;
  const etcd = manifest.etcd!;
  const artifact = manifest.artifacts.find((a) => a.kind === 'etcd-snapshot')!;
  const snapshot = join(sandbox.repoDir, manifest.cluster, 'backups', manifest.id, artifact.path);
  if ((await stat(snapshot)).size !== artifact.size) throw new Error(`${snapshot} is not ${artifact.size} bytes as its manifest says`);
  const after = await Promise.all(sandbox.nodes.map((n) => keyCounts(sandbox, n)));
  if (after.some((c) => c.total !== etcd.keyCount || c.registry !== after[0]!.registry))
    throw new Error(
      `right after the backup the members hold ${after.map((c) => `${c.total} keys (/registry/ ${c.registry})`).join(', ')}; the backup says ${etcd.keyCount}: something writes to etcd`,
    );
  const info: RestoreBackup = {
    id: manifest.id,
    config,
    seconds: round(backup.measured.seconds),
    coordinatorPeakRssMiB: round(backup.measured.peakRssKiB / 1024, 1),
    node: etcd.node,
    snapshotBytes: artifact.size,
    snapshotMiB: toMiB(artifact.size),
    revision: etcd.revision,
    keyCount: etcd.keyCount,
    registryKeyCount: after[0]!.registry,
  };
  const copies = backup.nodeCopies;
  if (mode === 'copies') {
    if (!copies) throw new Error(`kbur --config ${config} backup --json (backup.copySnapshotToNodes: true) printed no nodeCopies`);
    info.nodeCopies = copies;
    const bad = [
      ...copies.filter((c) => !c.ok).map((c) => `${c.node}: ${c.detail}`),
      ...sandbox.nodes.filter((n) => !copies.some((c) => c.node === n.name)).map((n) => `${n.name}: not in nodeCopies`),
    ];
    if (bad.length) throw new Error(`backup ${manifest.id}: not every node keeps a copy of its snapshot: ${bad.join('; ')}`);
    await assertCopiesKept(sandbox, info);
  } else if (copies?.length) {
    throw new Error(`backup ${manifest.id} with ${config} sent snapshot copies to the nodes: the upload mode needs a backup without`);
  }
  log(
    `${sizeMiB} MiB restore: backup ${manifest.id} in ${info.seconds.toFixed(2)} s: snapshot ${toMiB(artifact.size)} MiB from ${etcd.node}, revision ${etcd.revision}, ${etcd.keyCount} keys (${after[0]!.registry} under /registry/)` +
      (copies ? `; copies kept on ${copies.map((c) => c.node).join(', ')}` : ''),
  );
  return { info, manifest, snapshot };
}

/**
 * The restore benchmark of one size: on the backup benchmark's sandbox when given (after its runs),
 * else on a fresh one filled the same way. Two kept backups, the first without snapshot copies on
 * the nodes and the second with; every run restores by hand (from the second's snapshot), with kbur
 * from the nodes' copies (the second) and with kbur uploading the snapshot (the first), the three in
 * rotation; the cluster is checked and tidied after each.
 */
async function benchRestore(
  sizeMiB: number,
  opts: Options,
  dir: string,
  state: State,
  reused: FilledSandbox | undefined,
  result: RestoreSizeResult,
): Promise<void> {
  const signal = state.abort.signal;
  const filled = reused ?? (await startFilledSandbox(sizeMiB, opts, dir, state));
  const { sandbox } = filled;
  Object.assign(result, {
    sandbox: reused ? 'reused from the backup runs' : 'fresh',
    quotaBackendBytes: filled.quota,
    sandboxStartSeconds: filled.sandboxStartSeconds,
    fillSeconds: filled.fill.seconds,
  });
  await assertNormal(sandbox, signal);

  // The upload's backup first: the agents keep copies of the newest backups only (localSnapshots.keep, 1 by default).
  const copiesConfig = await writeCopiesConfig(sandbox);
  const upload = await takeRestoreBackup(sizeMiB, sandbox, 'upload', sandbox.coordinatorConfig, signal);
  result.backups.upload = upload.info;
  const copies = await takeRestoreBackup(sizeMiB, sandbox, 'copies', copiesConfig, signal);
  result.backups.copies = copies.info;
  const kept: Record<KburMode, KeptBackup> = { copies, upload };
  if (copies.info.keyCount !== upload.info.keyCount || copies.info.registryKeyCount !== upload.info.registryKeyCount)
    throw new Error(
      `backup ${upload.info.id} has ${upload.info.keyCount} keys (/registry/ ${upload.info.registryKeyCount}), ${copies.info.id} ${copies.info.keyCount} (/registry/ ${copies.info.registryKeyCount}): something writes to etcd`,
    );
  const members = (await clusterIdentity(sandbox)).members;
  const agentPids = sandbox.nodes.map((n) =>
    findPid(`kbur-agent of ${n.name}`, (argv) => argv.includes(n.agentConfig) && argv.some((a) => a.endsWith('agent/bin.js'))),
  );
  const want = (b: RestoreBackup): { members: string[]; keyCount: number; registryKeyCount: number } => ({
    members,
    keyCount: b.keyCount,
    registryKeyCount: b.registryKeyCount,
  });
  type Check = { check: { problems: string[]; summary: string } };

  for (let i = 0; i < opts.runs; i++) {
    const order = RESTORE_PROCEDURES.map((_, j) => RESTORE_PROCEDURES[(i + j) % RESTORE_PROCEDURES.length]!);
    let manual: (ManualOutcome & Check) | undefined;
    const kbur: Partial<Record<KburMode, KburRestoreOutcome & Check>> = {};
    const clusterId = async (): Promise<string> => (await clusterIdentity(sandbox)).clusterIds[0] ?? '';
    const doManual = async (): Promise<void> => {
      const before = await clusterId();
      const leader = await etcdLeader(sandbox);
      // The copies mode's snapshot: the manual procedure starts, like it, with the snapshot at hand.
      const got = await manualRestore(sandbox, copies.snapshot, leader, signal);
      manual = { ...got, check: await checkRestored(sandbox, { ...want(copies.info), clusterIdBefore: before }, signal) };
      log(
        `${sizeMiB} MiB restore run ${i + 1}: manual ${got.seconds.toFixed(2)} s (${MANUAL_STEPS.map((s) => `${s} ${got.steps[s].toFixed(2)}`).join(', ')})`,
      );
    };
    const doKbur = async (mode: KburMode): Promise<void> => {
      const b = kept[mode].info;
      const before = await clusterId();
      const got = await kburRestore(sandbox, b.config, b.id, agentPids, signal);
      assertStaged(mode, got, sandbox.nodes);
      kbur[mode] = { ...got, check: await checkRestored(sandbox, { ...want(b), clusterIdBefore: before }, signal) };
      log(
        `${sizeMiB} MiB restore run ${i + 1}: ${KBUR_MODE_TEXT[mode]} ${got.measured.seconds.toFixed(2)} s (${Object.entries(got.steps)
          .map(([s, x]) => `${s} ${x.toFixed(2)}`)
          .join(', ')})`,
      );
    };
    for (const procedure of order) {
      await assertNormal(sandbox, signal);
      await assertCopiesKept(sandbox, copies.info);
      await sleep(1_000, undefined, { signal });
      await (procedure === 'manual' ? doManual() : doKbur(procedure));
      // Each leaves a healthy cluster on the restored data; what it left beside it goes (the nodes' snapshot copies stay).
      await removeLeftovers(sandbox, copies.manifest.cluster);
    }
    if (!manual || !kbur.copies || !kbur.upload) throw new Error(`restore run ${i + 1} did not measure all three procedures`);
    const manualSeconds = manual.seconds;
    const manualCopySeconds = manual.steps.copy;
    const kburResult = (mode: KburMode, k: KburRestoreOutcome & Check): KburRestoreRunResult => ({
      backupId: kept[mode].info.id,
      restoreId: k.restoreId,
      seconds: round(k.measured.seconds),
      // With copies on the nodes, kbur starts from a snapshot each node holds: so does the manual procedure without its copy step.
      ratio: round(k.measured.seconds / (mode === 'copies' ? manualSeconds - manualCopySeconds : manualSeconds)),
      downtimeSeconds: round(k.downtimeSeconds),
      preStopSeconds: round(k.preStopSeconds),
      stopToVerifySeconds: round(k.stopToVerifySeconds),
      coordinatorPeakRssMiB: round(k.measured.peakRssKiB / 1024, 1),
      agentPeakRssMiB: round(k.agentHwmKiB / 1024, 1),
      cpuSeconds: {
        coordinator: round(k.measured.cpuSeconds, 2),
        agents: round(k.agentCpu, 2),
        agentChildren: round(k.agentChildrenCpu, 2),
      },
      steps: k.steps,
      stagedFrom: k.stagedFrom,
      lines: k.lines,
      check: k.check.summary,
    });
    const problems = [
      ...manual.check.problems.map((p) => `manual: ${p}`),
      ...KBUR_MODES.flatMap((mode) => kbur[mode]!.check.problems.map((p) => `${KBUR_MODE_TEXT[mode]}: ${p}`)),
    ];
    const r: RestoreRunResult = {
      run: i + 1,
      order,
      manual: {
        seconds: round(manual.seconds),
        steps: manual.steps,
        cpuSeconds: { etcdctl: round(manual.etcdctlCpuSeconds, 2), cp: round(manual.cpCpuSeconds, 2) },
        check: manual.check.summary,
      },
      kbur: { copies: kburResult('copies', kbur.copies), upload: kburResult('upload', kbur.upload) },
      problems,
    };
    result.runs.push(r);
    const c = r.kbur.copies;
    const u = r.kbur.upload;
    log(
      `${sizeMiB} MiB restore run ${i + 1}/${opts.runs} (${order.join(', ')}): manual ${r.manual.seconds.toFixed(2)} s; ` +
        `copies ${c.seconds.toFixed(2)} s, ratio ${c.ratio.toFixed(3)}, downtime ${c.downtimeSeconds.toFixed(2)} s, before the stop ${c.preStopSeconds.toFixed(2)} s; ` +
        `upload ${u.seconds.toFixed(2)} s, ratio ${u.ratio.toFixed(3)}, downtime ${u.downtimeSeconds.toFixed(2)} s, before the stop ${u.preStopSeconds.toFixed(2)} s; ` +
        `coordinator RSS ${c.coordinatorPeakRssMiB} / ${u.coordinatorPeakRssMiB} MiB, CPU ${c.cpuSeconds.coordinator} / ${u.cpuSeconds.coordinator} s; ` +
        `agents CPU ${c.cpuSeconds.agents} / ${u.cpuSeconds.agents} s (copies / upload)` +
        (problems.length ? `; PROBLEM: ${problems.join('; ')}` : ''),
    );
  }
  for (const b of [upload, copies])
    await rm(join(sandbox.repoDir, b.manifest.cluster, 'backups', b.manifest.id), { recursive: true, force: true });
}

function emptyRestoreResult(sizeMiB: number): RestoreSizeResult {
  return {
    sizeMiB,
    sandbox: 'fresh',
    quotaBackendBytes: 0,
    sandboxStartSeconds: 0,
    fillSeconds: 0,
    backups: {},
    loadAverage: { before: loadavg().map((x) => round(x, 2)), after: [] },
    runs: [],
    median: undefined,
    max: undefined,
    targets: RESTORE_TARGETS,
    pass: { ratio: false, checks: false },
  };
}

/** Fills in the medians and verdicts of a restore result (also after an error: the runs measured so far). */
function finishRestoreResult(r: RestoreSizeResult): RestoreSizeResult {
  r.loadAverage.after = loadavg().map((x) => round(x, 2));
  r.median = summarizeRestore(r.runs);
  const maxOf = (mode: KburMode, f: (x: KburRestoreRunResult) => number): number => Math.max(...r.runs.map((x) => f(x.kbur[mode])));
  r.max = r.runs.length
    ? {
        coordinatorPeakRssMiB: {
          copies: maxOf('copies', (x) => x.coordinatorPeakRssMiB),
          upload: maxOf('upload', (x) => x.coordinatorPeakRssMiB),
        },
        agentPeakRssMiB: Math.max(...KBUR_MODES.map((mode) => maxOf(mode, (x) => x.agentPeakRssMiB))),
      }
    : undefined;
  r.pass = {
    ratio: r.error === undefined && r.median !== undefined && r.median.kbur[RESTORE_TARGETS.kburMode].ratio <= RESTORE_TARGETS.ratioMax,
    checks: r.error === undefined && r.runs.length > 0 && r.runs.every((x) => x.problems.length === 0),
  };
  return r;
}

// ---------------------------------------------------------------------------------------------
// Reports

interface Report {
  date: string;
  command: string;
  machine: Record<string, unknown>;
  method: string[];
  results: SizeResult[];
  /** The restore benchmark (RTO); absent with --restore-sizes none. */
  restore?: RestoreSection;
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

/** The backup section runs unless --sizes none left it empty. */
const hasBackup = (report: Report): boolean => report.results.length > 0 || !report.restore;

function textReport(report: Report): string {
  const out: string[] = ['', `kbur ${hasBackup(report) ? 'backup' : 'restore'} benchmark, ${report.date}`];
  const m = report.machine;
  out.push(
    `machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memGiB} GiB, node ${m.node}, etcd ${m.etcd}, kbur ${m.kbur} ${m.gitCommit ?? ''}`,
    '',
  );
  if (hasBackup(report)) out.push(...backupText(report));
  if (report.restore) out.push(...restoreText(report.restore, hasBackup(report)));
  return out.join('\n') + '\n';
}

function backupText(report: Report): string[] {
  const out: string[] = [];
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
  return out;
}

function markdownReport(report: Report): string {
  const m = report.machine;
  const head = [
    `# kbur ${hasBackup(report) ? 'backup' : 'restore'} benchmark`,
    '',
    `${report.date}: \`${report.command}\``,
    '',
    `Machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memGiB} GiB RAM, Linux ${m.kernel}, node ${m.node}, etcd ${m.etcd}, etcdctl ${m.etcdctl}, kbur ${m.kbur} ${m.gitCommit ?? ''}`,
    '',
  ];
  const out = [...head, ...(hasBackup(report) ? backupMarkdown(report) : [])];
  if (report.restore) out.push(...restoreMarkdown(report.restore, hasBackup(report)));
  return out.join('\n');
}

function backupMarkdown(report: Report): string[] {
  const out: string[] = [
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
  return out;
}

const RESTORE_METHOD = [
  "Per restore size: the backup benchmark's sandbox of that size after its runs (else a fresh one, filled the same way). Two `kbur backup --json` are taken and kept: first one with the sandbox's kbur.yaml, for the upload mode; then one with `kbur-copies.yaml`, the same config plus `backup: {copySnapshotToNodes: true}`, for the copies mode: after it each agent keeps its snapshot as `<stateDir>/snapshots/<backup-id>.db` (agents keep the newest `localSnapshots.keep` copies, 1 by default, so the first backup has none). Every `nodeCopies[].ok` of that backup must be true, and each node's copy is checked in place (size) before every procedure of every run.",
  'Every run restores three times, 1 s apart, the order rotating: run 1 manual, copies, upload; run 2 copies, upload, manual; run 3 upload, manual, copies; and so on. Both backups hold the same data (same key counts, checked).',
  "Manual: the procedure of etcd's recovery guide for a kubeadm static-pod cluster, timed from the first copy to all three endpoints healthy: `cp` of the snapshot into each node's dir, `etcd.yaml` moved out of `manifests/` into a folder beside it and each etcd waited for until it exited (followers in parallel, then the leader, as kbur does; the leader is looked up before the clock starts), `etcdctl snapshot restore <copy> --name --initial-cluster --initial-cluster-token <new> --initial-advertise-peer-urls --data-dir <new dir>` of the three members in parallel (env: PATH and ETCDCTL_API=3 only), old data dirs moved aside and the new ones in place, the manifests moved back, then `etcdctl endpoint health` polled every 200 ms until all three pass.",
  "The manual procedure's `copy` step is a local `cp` (same disk, no network) of the copies backup's snapshot into each node's dir; getting it onto real nodes (an operator's scp) would take longer. kbur with copies on the nodes starts from a snapshot each node already holds, so its ratio (the target's) is to the manual time without the copy step: the manual procedure from the snapshot on each node, as etcd's guide describes it. kbur with the snapshot uploaded moves 3× the snapshot over gRPC with mTLS before it stops anything; its ratio is to the whole manual time, local cp included.",
  "The manual procedure leaves kube-apiserver, kube-controller-manager and kube-scheduler running (the guide's minimum); kbur also moves their manifests out before etcd and back after its checks.",
  "kbur, both modes: `kbur --config <that backup's config> restore <backup-id> --yes`, spawn to exit, exit 0 required; all its checks are included (staging checked on each node, sha256 and etcd hash; a snapshot staged in the same run is not reread by `verify-staged`; quorum and member list, revision and key count).",
  "kbur, copies on the nodes (the target's mode): preflight finds a copy of the backup on every node and stops reading the repository's copy (plan note: every node keeps a copy of this snapshot); each agent rereads its copy (sha256 and etcd hash) and stages it as a hard link: no snapshot bytes cross the network. The run fails unless every node's `stage` line says `staged ... from the copy this node keeps`: a fallback to the upload is never reported as this mode.",
  "kbur, snapshot uploaded (no target, reported beside it): the backup without copies. Preflight checks the repository's copy (sha256 and etcd hash), then the coordinator reads the snapshot once and streams it to the three agents over gRPC with mTLS (3× the snapshot), each writing it and checking its sha256 and etcd hash. The run fails unless every node's `stage` line says `(<n> bytes uploaded`. The sandbox's nodes share one machine: the upload crosses loopback, so here it costs CPU (TLS, hashing) and disk writes, not network time.",
  "kbur downtime: from its first `stop <node>:` line to its `verify:` line on stdout (timestamps taken as lines arrive). The stop step starts before its first line (the followers' stop), right after the last `verify-staged` line; kbur pre-stop is from spawn to that line (preflight, plan, staging and its check). kbur stop→verify: from that line to the `verify:` line, the downtime with the followers' stop. A step's time runs from the previous step's last line to its own last line; `exit` is from the last line to the exit.",
  "After each procedure, untimed: all three endpoints healthy, one new cluster id, the same member list, and on every member (serializable reads) the key count equals the restored backup manifest's etcd.keyCount and the count under /registry/ equals the count taken right after that backup. Then the old data dirs, staged snapshots, the manual procedure's copies and kbur's journals are deleted; the snapshot copies the agents keep (`<stateDir>/snapshots/`) are not (the bench refuses to), so every run's copies mode restores from the copies made by the backup.",
  'Coordinator peak RSS and CPU: /proc polling every 20 ms. Agents CPU: utime+stime deltas of the three agents around each kbur run; their children (etcdctl snapshot restore, du) separately, from cutime+cstime. Agent RSS is the largest VmHWM of the three agents: the peak over their lives.',
];

const KBUR_MODE_SHORT: Record<KburMode, string> = { copies: 'kbur copies', upload: 'kbur upload' };

function failedRestoreTargets(r: RestoreSizeResult): string[] {
  if (r.error || !r.median) return [`${r.sizeMiB} MiB: no measurement (${r.error ?? 'no runs'})`];
  const out: string[] = [];
  const mode = RESTORE_TARGETS.kburMode;
  if (!r.pass.ratio)
    out.push(
      `${r.sizeMiB} MiB: median ratio ${KBUR_MODE_TEXT[mode]} / manual ${fmt(r.median.kbur[mode].ratio, 3)} > ${RESTORE_TARGETS.ratioMax}`,
    );
  if (!r.pass.checks) out.push(`${r.sizeMiB} MiB: a restored cluster failed its checks (see runs)`);
  return out;
}

/** The upload mode, beside the target: no verdict. */
function uploadReference(r: RestoreSizeResult): string | undefined {
  const u = r.median?.kbur.upload;
  if (!u) return undefined;
  return `${r.sizeMiB} MiB: ${KBUR_MODE_TEXT.upload}, median ${fmt(u.seconds)} s, ratio to manual ${fmt(u.ratio, 3)}, pre-stop ${fmt(u.preStopSeconds)} s (no target)`;
}

function restoreSummaryRows(section: RestoreSection): { headers: string[]; rows: string[][] } {
  const perMode = (label: string): string[] => [
    `${label} s`,
    `${label} ratio`,
    `${label} downtime s`,
    `${label} pre-stop s`,
    `${label} coord RSS`,
    `${label} coord CPU s`,
    `${label} agents CPU s`,
  ];
  const headers = ['size', 'snapshot MiB', 'manual s', 'manual s without copy', ...perMode('copies'), ...perMode('upload'), 'result'];
  const rows = section.results.map((r) => {
    const verdict = r.error
      ? 'ERROR'
      : failedRestoreTargets(r).length
        ? `FAIL (${[!r.pass.ratio && 'ratio', !r.pass.checks && 'check'].filter(Boolean).join(', ')})`
        : 'pass';
    const mode = (m: KburMode): string[] => {
      const k = r.median?.kbur[m];
      return [
        fmt(k?.seconds),
        fmt(k?.ratio, 3),
        fmt(k?.downtimeSeconds),
        fmt(k?.preStopSeconds),
        `${fmt(r.max?.coordinatorPeakRssMiB[m], 1)} MiB`,
        fmt(k?.cpuSeconds.coordinator),
        fmt(k?.cpuSeconds.agents),
      ];
    };
    return [
      `${r.sizeMiB} MiB`,
      fmt(r.backups.copies?.snapshotMiB, 1),
      fmt(r.median?.manual.seconds),
      fmt(r.runs.length ? median(r.runs.map((x) => x.manual.seconds - x.manual.steps.copy)) : undefined),
      ...mode('copies'),
      ...mode('upload'),
      verdict,
    ];
  });
  return { headers, rows };
}

/** One row per run and kbur mode, beside the manual procedure of the same run. */
function restoreRunRows(r: RestoreSizeResult): { headers: string[]; rows: string[][] } {
  const headers = [
    'run',
    'order',
    'manual s (copies: without copy)',
    'kbur',
    'kbur s',
    'ratio',
    'downtime s',
    'pre-stop s',
    'stop→verify s',
    'coord RSS',
    'coord CPU s',
    'agents CPU s',
    "agents' children CPU s",
    'manual etcdctl CPU s',
  ];
  const rows = r.runs.flatMap((x) =>
    KBUR_MODES.map((mode) => {
      const k = x.kbur[mode];
      return [
        String(x.run),
        x.order.join(', '),
        fmt(mode === 'copies' ? x.manual.seconds - x.manual.steps.copy : x.manual.seconds),
        mode,
        fmt(k.seconds),
        fmt(k.ratio, 3),
        fmt(k.downtimeSeconds),
        fmt(k.preStopSeconds),
        fmt(k.stopToVerifySeconds),
        `${fmt(k.coordinatorPeakRssMiB, 1)} MiB`,
        fmt(k.cpuSeconds.coordinator),
        fmt(k.cpuSeconds.agents),
        fmt(k.cpuSeconds.agentChildren),
        fmt(x.manual.cpuSeconds.etcdctl),
      ];
    }),
  );
  return { headers, rows };
}

/** Seconds per step, one column per run and the median: where each procedure's time goes. */
function restoreStepRows(r: RestoreSizeResult): { headers: string[]; rows: string[][] } {
  const headers = ['step', ...r.runs.map((x) => `run ${x.run}`), 'median'];
  const rows: string[][] = [];
  for (const step of MANUAL_STEPS)
    rows.push([`manual: ${step}`, ...r.runs.map((x) => fmt(x.manual.steps[step])), fmt(r.median?.manual.steps[step])]);
  rows.push(['manual: total', ...r.runs.map((x) => fmt(x.manual.seconds)), fmt(r.median?.manual.seconds)]);
  for (const mode of KBUR_MODES) {
    const label = KBUR_MODE_SHORT[mode];
    for (const step of KBUR_STEPS) {
      if (!r.runs.some((x) => x.kbur[mode].steps[step] !== undefined)) continue;
      rows.push([`${label}: ${step}`, ...r.runs.map((x) => fmt(x.kbur[mode].steps[step])), fmt(r.median?.kbur[mode].steps[step])]);
    }
    rows.push([`${label}: total`, ...r.runs.map((x) => fmt(x.kbur[mode].seconds)), fmt(r.median?.kbur[mode].seconds)]);
  }
  return { headers, rows };
}

/** How a kbur restore staged the snapshot on the nodes, as its stage lines said. */
function stagedText(k: KburRestoreRunResult): string {
  const how = (from: 'copy' | 'upload'): string => (from === 'copy' ? 'from its copy' : 'by upload');
  const entries = Object.entries(k.stagedFrom);
  const sources = new Set(entries.map(([, from]) => from));
  return sources.size === 1
    ? `every node staged ${how([...sources][0]!)}`
    : entries.map(([node, from]) => `${node} staged ${how(from)}`).join(', ');
}

function restoreHeadline(r: RestoreSizeResult): string {
  const { copies: c, upload: u } = r.backups;
  const snapshotOf = (b: RestoreBackup): string =>
    `snapshot ${fmt(b.snapshotMiB, 1)} MiB from ${b.node}, revision ${b.revision}, ${b.keyCount} keys (${b.registryKeyCount} under /registry/)`;
  const backups = [
    u ? `backup without copies ${u.id} in ${fmt(u.seconds)} s` : undefined,
    c
      ? `backup with copies ${c.id} in ${fmt(c.seconds)} s (coordinator RSS ${fmt(c.coordinatorPeakRssMiB, 1)} MiB; copies kept on ${c.nodeCopies?.map((x) => x.node).join(', ') ?? '-'})`
      : undefined,
  ].filter(Boolean);
  const sameSnapshot = !c || !u || (c.snapshotBytes === u.snapshotBytes && c.revision === u.revision && c.node === u.node);
  const snapshot = c ?? u;
  return (
    `${r.sizeMiB} MiB: sandbox ${r.sandbox}${r.sandbox === 'fresh' ? ` (start ${r.sandboxStartSeconds} s, fill ${r.fillSeconds} s)` : ''}; ` +
    (backups.length ? `${backups.join(', ')}: ` : '') +
    (snapshot ? `${snapshotOf(snapshot)}${sameSnapshot || !u ? '' : ` (without copies: ${snapshotOf(u)})`}; ` : '') +
    `load average ${r.loadAverage.before.join(' ')} -> ${r.loadAverage.after.join(' ')}`
  );
}

function restoreText(section: RestoreSection, afterBackup: boolean): string[] {
  const out: string[] = [
    ...(afterBackup ? [''] : []),
    `kbur restore (RTO) of the 3-member cluster against the manual procedure of etcd's recovery guide, timed in the same runs: kbur from the snapshot copies the nodes keep (copies, the target's) and kbur uploading the snapshot (upload, no target)`,
    '',
  ];
  const s = restoreSummaryRows(section);
  out.push(...table(s.headers, s.rows));
  for (const r of section.results) {
    out.push('', restoreHeadline(r));
    if (r.error) out.push(`  ERROR: ${r.error}`);
    if (r.runs.length) {
      const t = restoreRunRows(r);
      out.push(...table(t.headers, t.rows).map((l) => `  ${l}`));
      const st = restoreStepRows(r);
      out.push('', ...table(st.headers, st.rows).map((l) => `  ${l}`));
    }
    for (const run of r.runs) for (const p of run.problems) out.push(`  run ${run.run}: ${p}`);
  }
  out.push(
    '',
    'manual: local cp x3 (the snapshot already on each node), etcd.yaml out, etcdctl snapshot restore x3 in parallel, swap data dirs, etcd.yaml back, wait healthy; kube-apiserver & co. untouched (kbur stops and restarts them too).',
    'copies: each node stages the copy it keeps (reread, hard link); upload: the coordinator first streams 3x the snapshot to the agents over mTLS.',
  );
  const failed = section.results.flatMap(failedRestoreTargets);
  out.push(
    `target: median restore time ${KBUR_MODE_TEXT[RESTORE_TARGETS.kburMode]} / manual <= ${RESTORE_TARGETS.ratioMax}, every check of the restored cluster passed`,
  );
  out.push(failed.length ? `RESTORE TARGETS MISSED:\n${failed.map((f) => `  - ${f}`).join('\n')}` : 'restore target met');
  const reference = section.results.map(uploadReference).filter((x): x is string => x !== undefined);
  if (reference.length) out.push(`beside it:\n${reference.map((f) => `  - ${f}`).join('\n')}`);
  return out;
}

function restoreMarkdown(section: RestoreSection, afterBackup: boolean): string[] {
  const out: string[] = [
    ...(afterBackup ? ['# kbur restore benchmark (RTO)', ''] : []),
    `Target: median restore time (RTO) of kbur restoring a backup whose snapshot every node keeps a copy of (\`backup.copySnapshotToNodes\`; "copies" below) at most ${RESTORE_TARGETS.ratioMax} times the manual procedure of etcd's recovery guide timed in the same run without its copy step, so that both start with the snapshot on each node; every check of kbur included and every restored cluster checked. The same runs time kbur restoring a backup without copies, which first uploads the snapshot to the three nodes ("upload"): reported beside it, without a target. Times are medians; RSS is the maximum over runs.`,
    '',
  ];
  const s = restoreSummaryRows(section);
  out.push(...markdownTable(s.headers, s.rows));
  for (const r of section.results) {
    out.push('', `## Restore ${r.sizeMiB} MiB`, '', `${restoreHeadline(r)}.`);
    if (r.error) out.push('', `**ERROR**: ${r.error}`);
    if (r.runs.length) {
      const t = restoreRunRows(r);
      out.push(
        '',
        'Each run, kbur in both modes beside the manual procedure of the same run (ratio = kbur s / manual s; for copies, manual s without its copy step):',
        '',
      );
      out.push(...markdownTable(t.headers, t.rows));
      const st = restoreStepRows(r);
      out.push('', 'Where the time goes (seconds):', '', ...markdownTable(st.headers, st.rows));
      out.push('', 'Checks after each restore:', '');
      for (const run of r.runs)
        out.push(
          `- run ${run.run}: manual: ${run.manual.check}; ${KBUR_MODES.map((mode) => `${KBUR_MODE_SHORT[mode]} (${run.kbur[mode].restoreId}; ${stagedText(run.kbur[mode])}): ${run.kbur[mode].check}`).join('; ')}`,
        );
      out.push(
        '',
        `Agents' peak RSS (VmHWM over their lives): ${fmt(r.max?.agentPeakRssMiB, 1)} MiB; manual \`cp\` CPU ${fmt(r.median?.manual.cpuSeconds.cp)} s.`,
      );
    }
    for (const run of r.runs) for (const p of run.problems) out.push('', `- run ${run.run}: ${p}`);
  }
  const failed = section.results.flatMap(failedRestoreTargets);
  const reference = section.results.map(uploadReference).filter((x): x is string => x !== undefined);
  out.push('', '## Restore result', '', failed.length ? failed.map((f) => `- missed: ${f}`).join('\n') : 'Restore target met.');
  if (reference.length) out.push('', 'Beside it, without a target:', '', ...reference.map((f) => `- ${f}`));
  out.push('', '## Restore method', '', ...section.method.map((x) => `- ${x}`), '');
  return out;
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
    ...(opts.restoreSizes.length ? { restore: { targets: RESTORE_TARGETS, method: RESTORE_METHOD, results: [] } } : {}),
  };
  log(
    `sizes ${opts.sizes.join(', ') || 'none'} MiB, restore sizes ${opts.restoreSizes.join(', ') || 'none'} MiB, ${opts.runs} runs each; root ${root}; results ${opts.out}`,
  );
  let failed = false;
  try {
    const backupSizes = new Set(opts.sizes);
    for (const sizeMiB of [...opts.sizes, ...opts.restoreSizes.filter((s) => !backupSizes.has(s))]) {
      const dir = join(root, `size-${sizeMiB}MiB`);
      const restoreDir = `${dir}-restore`;
      /** The backup benchmark's sandbox, when its runs went well: the restore benchmark reuses it. */
      let filled: FilledSandbox | undefined;
      try {
        if (backupSizes.has(sizeMiB)) {
          try {
            report.results.push(await benchSize(sizeMiB, opts, dir, state, (f) => (filled = f)));
          } catch (err) {
            filled = undefined;
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
          }
        }
        if (report.restore && opts.restoreSizes.includes(sizeMiB)) {
          // A sandbox whose backup runs failed is not reused: the restore gets a fresh one.
          if (!filled && state.sandbox) {
            log(`${sizeMiB} MiB: stopping the sandbox`);
            await stopSandbox(state);
          }
          const result = emptyRestoreResult(sizeMiB);
          report.restore.results.push(result);
          try {
            await benchRestore(sizeMiB, opts, filled ? dir : restoreDir, state, filled, result);
          } catch (err) {
            if (state.abort.signal.aborted) throw state.abort.signal.reason;
            failed = true;
            result.error = (err as Error).message;
            log(`${sizeMiB} MiB restore: FAILED: ${result.error}`);
            if (!opts.keep)
              log(`${sizeMiB} MiB restore: rerun with --keep to keep the sandbox's logs (${join(filled ? dir : restoreDir, 'logs')})`);
          } finally {
            finishRestoreResult(result);
          }
        }
      } finally {
        if (state.sandbox) log(`${sizeMiB} MiB: stopping the sandbox`);
        await stopSandbox(state);
        if (!opts.keep) {
          await rm(dir, { recursive: true, force: true });
          await rm(restoreDir, { recursive: true, force: true });
        }
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

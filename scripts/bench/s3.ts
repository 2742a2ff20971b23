/**
 * The s3 scenario (issue 12): `kbur backup` to an S3 repository with zstd and age, against the
 * script an operator would write: `etcdctl snapshot save` to a file, `zstd`, `age -r`, `s3cmd put`,
 * both to the same S3-compatible server on loopback (test/sandbox/s3.ts), in alternating runs. At
 * the --large-sizes, one kbur backup to S3 shows its memory stays flat.
 */
import { accessSync, constants } from 'node:fs';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse, stringify } from 'yaml';
import type { Sandbox, SandboxNode } from '../../test/sandbox/cluster.js';
import { type S3Server, s3Repository, startS3Server } from '../../test/sandbox/s3.js';
import { kburBackup } from './backup.js';
import { type Measured, failure, findPid, measure, procStatusKiB } from './proc.js';
import { S3_METHOD, s3Markdown, s3Text } from './s3-report.js';
import type { Context, Scenario } from './scenario.js';
import { ETCDCTL_ENV, MiB, log, median, round, run as exec } from './util.js';

export const S3_TARGETS = { ratioMax: 1.0, rssMaxMiB: 150 } as const;

/** The operator's script, step by step: each a process of its own. */
export const SCRIPT_STEPS = ['save', 'zstd', 'age', 's3cmd'] as const;

export type ScriptStep = (typeof SCRIPT_STEPS)[number];

const TOOLS = ['etcdctl', 'zstd', 'age', 'age-keygen', 's3cmd'];

export interface S3Run {
  run: number;
  order: 'script-first' | 'kbur-first';
  node: string;
  kburSeconds: number;
  scriptSeconds: number;
  ratio: number;
  steps: Record<ScriptStep, number>;
  /** Peak RSS of every process, MiB: kbur's coordinator, the snapshotting agent (VmHWM over its life), each step of the script. */
  peakRssMiB: { coordinator: number; agent: number } & Record<ScriptStep, number>;
  /** Bytes each put in the bucket. */
  kburObjectBytes: number;
  scriptObjectBytes: number;
}

export interface S3Large {
  sizeMiB: number;
  seconds: number;
  snapshotBytes: number;
  peakRssMiB: { coordinator: number; agent: number };
  pass: boolean;
  error?: string;
}

export interface S3SizeResult {
  sizeMiB: number;
  sandbox: 'reused' | 'fresh';
  loadAverage: { before: number[]; after: number[] };
  runs: S3Run[];
  median: { kburSeconds: number; scriptSeconds: number; ratio: number; steps: Record<ScriptStep, number> } | undefined;
  /** The largest peak RSS over the runs, per process. */
  max: S3Run['peakRssMiB'] | undefined;
  targets: typeof S3_TARGETS;
  pass: { ratio: boolean; rss: boolean };
  error?: string;
}

export interface S3Section {
  targets: typeof S3_TARGETS;
  method: string[];
  results: S3SizeResult[];
  large: S3Large[];
}

const onPath = (tool: string): boolean =>
  (process.env.PATH ?? '').split(delimiter).some((d) => {
    try {
      accessSync(join(d, tool), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });

const mib = (kib: number): number => round(kib / 1024, 1);

/** Everything the s3 scenario sets up once per size: the server, an age key, kbur's config and s3cmd's. */
interface S3Setup {
  s3: S3Server;
  recipient: string;
  kburConfig: string;
  s3cmdConfig: string;
}

async function setUp(sandbox: Sandbox, dir: string, network: string): Promise<S3Setup> {
  // If-None-Match honoured, as AWS S3, MinIO and Ceph RGW do: fauxqs alone ignores it, and kbur's
  // lock would then fall back to its lease object, 2 s of settling that no real server costs.
  const s3 = await startS3Server({ dir: join(dir, 's3'), network, conditionalPuts: true });
  try {
    const key = join(dir, 'age.key');
    await exec('age-keygen', ['-o', key]);
    const recipient = (await exec('age-keygen', ['-y', key])).stdout.trim();
    const base = parse(await readFile(sandbox.coordinatorConfig, 'utf8')) as Record<string, unknown>;
    const kburConfig = join(dir, 'kbur-s3.yaml');
    await writeFile(
      kburConfig,
      stringify({ ...base, repository: s3Repository(s3), compression: 'zstd', encryption: { recipients: [recipient] } }),
      { mode: 0o600 },
    );
    // s3cmd's own config: path-style on the loopback server, no SSL, SigV4, 8 MiB multipart parts (the
    // test server takes parts up to 11 MiB, s3cmd's default is 15; kbur's are 5, S3's minimum: fewer,
    // larger parts are no handicap for the script); the keys stay out of argv.
    const s3cmdConfig = join(dir, 's3cmd.cfg');
    await writeFile(
      s3cmdConfig,
      [
        '[default]',
        `access_key = ${s3.credentials.accessKeyId}`,
        `secret_key = ${s3.credentials.secretAccessKey}`,
        `host_base = ${s3.host}:${s3.port}`,
        `host_bucket = ${s3.host}:${s3.port}`,
        'use_https = False',
        'bucket_location = us-east-1',
        'signature_v2 = False',
        'multipart_chunk_size_mb = 8',
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    return { s3, recipient, kburConfig, s3cmdConfig };
  } catch (err) {
    await s3.stop();
    throw err;
  }
}

/** Empties the bucket through the S3 API (untimed), so that runs do not pile up objects. */
async function emptyBucket(setup: S3Setup, signal: AbortSignal): Promise<void> {
  const m = await measure(
    's3cmd',
    ['-c', setup.s3cmdConfig, '--no-progress', 'del', '--recursive', '--force', `s3://${setup.s3.bucket}/`],
    ETCDCTL_ENV,
    signal,
  );
  if (m.code !== 0) throw failure('s3cmd del --recursive', m);
}

async function bucketBytes(setup: S3Setup): Promise<number> {
  let total = 0;
  for (const o of await setup.s3.objects()) total += (await stat(o.file)).size;
  return total;
}

/** The operator's script: etcdctl snapshot save, zstd, age -r, s3cmd put; its files removed after. */
async function operatorScript(
  sandbox: Sandbox,
  node: SandboxNode,
  setup: S3Setup,
  dir: string,
  key: string,
  signal: AbortSignal,
): Promise<{ seconds: number; steps: Record<ScriptStep, number>; rssKiB: Record<ScriptStep, number> }> {
  const certs = join(sandbox.nodes[0]!.kubernetesDir, 'pki', 'etcd');
  const db = join(dir, 'snapshot.db');
  const zst = `${db}.zst`;
  const aged = `${zst}.age`;
  const commands: Record<ScriptStep, [string, string[]]> = {
    save: [
      'etcdctl',
      [
        `--endpoints=${node.clientUrl}`,
        `--cacert=${join(certs, 'ca.crt')}`,
        `--cert=${join(certs, 'healthcheck-client.crt')}`,
        `--key=${join(certs, 'healthcheck-client.key')}`,
        'snapshot',
        'save',
        db,
      ],
    ],
    zstd: ['zstd', ['-q', '-3', '-f', db, '-o', zst]],
    age: ['age', ['-r', setup.recipient, '-o', aged, zst]],
    s3cmd: ['s3cmd', ['-c', setup.s3cmdConfig, '--no-progress', 'put', aged, `s3://${setup.s3.bucket}/${key}`]],
  };
  const steps = {} as Record<ScriptStep, number>;
  const rssKiB = {} as Record<ScriptStep, number>;
  try {
    for (const step of SCRIPT_STEPS) {
      const [cmd, args] = commands[step];
      const m: Measured = await measure(cmd, args, ETCDCTL_ENV, signal);
      if (m.code !== 0) throw failure(`${step} (${cmd})`, m);
      steps[step] = round(m.seconds);
      rssKiB[step] = m.peakRssKiB;
    }
  } finally {
    for (const f of [db, `${db}.part`, zst, aged]) await rm(f, { force: true });
  }
  return { seconds: round(SCRIPT_STEPS.reduce((t, s) => t + steps[s], 0)), steps, rssKiB };
}

function finishS3Result(r: S3SizeResult): void {
  r.loadAverage.after = loadavg().map((x) => round(x, 2));
  if (r.runs.length) {
    const m = (f: (x: S3Run) => number): number => round(median(r.runs.map(f)));
    r.median = {
      kburSeconds: m((x) => x.kburSeconds),
      scriptSeconds: m((x) => x.scriptSeconds),
      ratio: m((x) => x.ratio),
      steps: Object.fromEntries(SCRIPT_STEPS.map((s) => [s, m((x) => x.steps[s])])) as Record<ScriptStep, number>,
    };
    const keys = Object.keys(r.runs[0]!.peakRssMiB) as (keyof S3Run['peakRssMiB'])[];
    r.max = Object.fromEntries(keys.map((k) => [k, Math.max(...r.runs.map((x) => x.peakRssMiB[k]))])) as S3Run['peakRssMiB'];
  }
  r.pass = {
    ratio: r.error === undefined && r.median !== undefined && r.median.ratio <= S3_TARGETS.ratioMax,
    rss: r.error === undefined && r.max !== undefined && Object.values(r.max).every((x) => x < S3_TARGETS.rssMaxMiB),
  };
}

function agentOf(node: SandboxNode): number {
  return findPid(`kbur-agent of ${node.name}`, (argv) => argv.includes(node.agentConfig) && argv.some((a) => a.endsWith('agent/bin.js')));
}

async function compare(ctx: Context, sandbox: Sandbox, setup: S3Setup, r: S3SizeResult): Promise<void> {
  const { sizeMiB, opts, dir } = ctx;
  const signal = ctx.state.abort.signal;
  log(`${sizeMiB} MiB s3: warm-up kbur backup to S3 (discarded) to learn which member kbur snapshots`);
  const warm = await kburBackup(sandbox, signal, false, setup.kburConfig);
  await emptyBucket(setup, signal);
  const node = sandbox.nodes.find((n) => n.name === warm.manifest.etcd!.node);
  if (!node) throw new Error(`kbur snapshotted ${warm.manifest.etcd!.node}, which is not a sandbox node`);
  const agentPid = agentOf(node);
  for (let i = 0; i < opts.runs; i++) {
    const order = i % 2 === 0 ? 'script-first' : 'kbur-first';
    let k: { seconds: number; node: string; coordinatorKiB: number; agentKiB: number; bytes: number } | undefined;
    let s: (Awaited<ReturnType<typeof operatorScript>> & { bytes: number }) | undefined;
    const doKbur = async (): Promise<void> => {
      const got = await kburBackup(sandbox, signal, false, setup.kburConfig);
      k = {
        seconds: got.measured.seconds,
        node: got.manifest.etcd!.node,
        coordinatorKiB: got.measured.peakRssKiB,
        agentKiB: procStatusKiB(agentPid, 'VmHWM') ?? NaN,
        bytes: await bucketBytes(setup),
      };
      await emptyBucket(setup, signal);
    };
    const doScript = async (): Promise<void> => {
      const got = await operatorScript(sandbox, node, setup, dir, `script/run-${i + 1}/snapshot.db.zst.age`, signal);
      s = { ...got, bytes: await bucketBytes(setup) };
      await emptyBucket(setup, signal);
    };
    for (const step of order === 'script-first' ? [doScript, doKbur] : [doKbur, doScript]) {
      await sleep(1_000, undefined, { signal });
      await step();
    }
    if (!k || !s) throw new Error(`s3 run ${i + 1} did not measure both`);
    if (k.node !== node.name) throw new Error(`kbur snapshotted ${k.node} in run ${i + 1}, not ${node.name} as the script did`);
    const x: S3Run = {
      run: i + 1,
      order,
      node: k.node,
      kburSeconds: round(k.seconds),
      scriptSeconds: s.seconds,
      ratio: round(k.seconds / s.seconds),
      steps: s.steps,
      peakRssMiB: {
        coordinator: mib(k.coordinatorKiB),
        agent: mib(k.agentKiB),
        ...(Object.fromEntries(SCRIPT_STEPS.map((st) => [st, mib(s!.rssKiB[st])])) as Record<ScriptStep, number>),
      },
      kburObjectBytes: k.bytes,
      scriptObjectBytes: s.bytes,
    };
    r.runs.push(x);
    log(
      `${sizeMiB} MiB s3 run ${i + 1}/${opts.runs} (${order}): kbur ${x.kburSeconds.toFixed(2)} s, script ${x.scriptSeconds.toFixed(2)} s (${SCRIPT_STEPS.map((st) => `${st} ${x.steps[st].toFixed(2)}`).join(', ')}), ratio ${x.ratio.toFixed(3)}; ` +
        `peak RSS MiB ${Object.entries(x.peakRssMiB)
          .map(([p, v]) => `${p} ${v}`)
          .join(', ')}; bucket ${(x.kburObjectBytes / MiB).toFixed(1)} / ${(x.scriptObjectBytes / MiB).toFixed(1)} MiB`,
    );
  }
}

async function large(ctx: Context, sandbox: Sandbox, setup: S3Setup): Promise<S3Large> {
  const signal = ctx.state.abort.signal;
  log(`${ctx.sizeMiB} MiB s3: one kbur backup to S3 (zstd, age) for its memory`);
  const got = await kburBackup(sandbox, signal, false, setup.kburConfig);
  const node = sandbox.nodes.find((n) => n.name === got.manifest.etcd!.node)!;
  const peakRssMiB = { coordinator: mib(got.measured.peakRssKiB), agent: mib(procStatusKiB(agentOf(node), 'VmHWM') ?? NaN) };
  await emptyBucket(setup, signal);
  log(
    `${ctx.sizeMiB} MiB s3: ${got.measured.seconds.toFixed(2)} s, peak RSS coordinator ${peakRssMiB.coordinator} MiB, agent ${peakRssMiB.agent} MiB`,
  );
  return {
    sizeMiB: ctx.sizeMiB,
    seconds: round(got.measured.seconds),
    snapshotBytes: got.snapshotBytes,
    peakRssMiB,
    pass: peakRssMiB.coordinator < S3_TARGETS.rssMaxMiB && peakRssMiB.agent < S3_TARGETS.rssMaxMiB,
  };
}

export const s3Scenario: Scenario = {
  name: 's3',
  title: '`kbur backup` to S3 with zstd and age against etcdctl, zstd, age and s3cmd',
  missing: async () => {
    const absent = TOOLS.filter((t) => !onPath(t));
    return absent.length ? `${absent.join(', ')} not on PATH (bash scripts/setup.sh installs them)` : undefined;
  },
  sizes: (opts) => [...new Set([opts.size, ...opts.largeSizes])],
  async run(ctx) {
    const section = (ctx.report.s3 ??= { targets: S3_TARGETS, method: S3_METHOD, results: [], large: [] });
    const compares = ctx.sizeMiB === ctx.opts.size;
    const r: S3SizeResult = {
      sizeMiB: ctx.sizeMiB,
      sandbox: 'fresh',
      loadAverage: { before: loadavg().map((x) => round(x, 2)), after: [] },
      runs: [],
      median: undefined,
      max: undefined,
      targets: S3_TARGETS,
      pass: { ratio: false, rss: false },
    };
    if (compares) section.results.push(r);
    /** Which part runs: an error is recorded on it. */
    let part: 'compare' | 'large' = compares ? 'compare' : 'large';
    let setup: S3Setup | undefined;
    try {
      const { filled, reused } = await ctx.filled();
      r.sandbox = reused ? 'reused' : 'fresh';
      setup = await setUp(filled.sandbox, ctx.dir, ctx.opts.network);
      if (compares) await compare(ctx, filled.sandbox, setup, r);
      part = 'large';
      if (ctx.opts.largeSizes.includes(ctx.sizeMiB)) section.large.push(await large(ctx, filled.sandbox, setup));
    } catch (err) {
      const message = (err as Error).message;
      if (part === 'compare') r.error = message;
      else
        section.large.push({
          sizeMiB: ctx.sizeMiB,
          seconds: NaN,
          snapshotBytes: 0,
          peakRssMiB: { coordinator: NaN, agent: NaN },
          pass: false,
          error: message,
        });
      throw err;
    } finally {
      if (compares) finishS3Result(r);
      await setup?.s3.stop();
    }
  },
  text: (report) => (report.s3 ? s3Text(report) : []),
  markdown: (report) => (report.s3 ? s3Markdown(report) : []),
};

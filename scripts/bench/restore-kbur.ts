import { KBUR_BIN } from '../../test/helpers/kbur.js';
import type { Sandbox, SandboxNode } from '../../test/sandbox/cluster.js';
import { NODE_FLAGS } from '../../shared/node-flags.js';
import { STEPS } from '../../coordinator/restore/journal.js';
import { type Measured, failure, measure, procChildrenCpuSeconds, procCpuSeconds, procStatusKiB } from './proc.js';
import { round } from './util.js';

/** kbur restore's phases as its stdout shows them: preflight until `restore <id> started;`, then one per step, then the exit. */
export const KBUR_STEPS = ['preflight', ...STEPS, 'exit'] as const;

export type KburStep = (typeof KBUR_STEPS)[number];

/**
 * The two kbur restores of every run: `copies` restores a backup taken with
 * backup.copySnapshotToNodes (each node stages its own copy), `upload` one taken without (the
 * coordinator uploads the snapshot to every node).
 */
export const KBUR_MODES = ['copies', 'upload'] as const;

export type KburMode = (typeof KBUR_MODES)[number];

export const KBUR_MODE_TEXT: Record<KburMode, string> = { copies: 'kbur, copies on the nodes', upload: 'kbur, snapshot uploaded' };

/** One `kbur restore --yes` of a run. */
export interface KburRestoreRunResult {
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

export interface KburRestoreOutcome {
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
export function stageSource(line: string): 'copy' | 'upload' | undefined {
  if (/^stage \S+: staged \S+ from the copy this node keeps\b/.test(line)) return 'copy';
  if (/^stage \S+: staged \S+ \(\d+ bytes uploaded\b/.test(line)) return 'upload';
  return undefined;
}

/** `kbur restore <backup> --yes [...extra]`, timed from spawn to exit, with the time of each of its step lines. */
export async function kburRestore(
  sandbox: Sandbox,
  config: string,
  backupId: string,
  agentPids: number[],
  signal: AbortSignal,
  extra: string[] = [],
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
    [...NODE_FLAGS, KBUR_BIN, '--config', config, 'restore', backupId, ...extra, '--yes'],
    process.env,
    signal,
    onLine,
  );
  const [own1, children1] = cpu();
  if (measured.code !== 0) {
    const out = measured.stdout.trim().split('\n').slice(-5).join('\n');
    const err = failure(['kbur restore', ...extra].join(' '), measured);
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
export function assertStaged(mode: KburMode, got: KburRestoreOutcome, nodes: SandboxNode[]): void {
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

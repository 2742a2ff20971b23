import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ETCD_MAX_QUOTA } from './sandbox.js';
import { GiB, MiB } from './util.js';

/** Every scenario the benchmark knows, in the order they run at a size (rebuild resets the nodes: last). */
export const SCENARIO_NAMES = ['backup', 'scrape', 's3', 'deep-verify', 'binaries', 'restore', 'rebuild'] as const;

export type ScenarioName = (typeof SCENARIO_NAMES)[number];

export interface Options {
  /** The scenarios asked for with --scenarios; undefined: every one whose prerequisites exist. */
  scenarios: ScenarioName[] | undefined;
  sizes: number[];
  /** Sizes of the restore benchmark (RTO), MiB; empty with --restore-sizes none. */
  restoreSizes: number[];
  /** Sizes of the s3 scenario's single backup that shows its memory stays flat; empty with none. */
  largeSizes: number[];
  /** The size of the scenarios measured at one size (scrape, s3, deep-verify, binaries, rebuild), MiB. */
  size: number;
  runs: number;
  out: string;
  root: string | undefined;
  keep: boolean;
  network: string;
}

export const USAGE = `usage: node dist/scripts/bench/main.js [--scenarios ${SCENARIO_NAMES.join(',')}] [--sizes 300,1536|none] [--restore-sizes 300|none] [--size 300] [--large-sizes 1536|none] [--runs 5] [--out bench-results/backup.json] [--root DIR] [--keep] [--network 127.0.2]`;

/** A list of sizes in MiB, or none. */
export function parseSizes(flag: string, text: string): number[] {
  if (text.trim() === 'none') return [];
  const sizes = text.split(',').map((s) => Number(s.trim()));
  if (sizes.length === 0 || sizes.some((s) => !Number.isInteger(s) || s < 1))
    throw new Error(`${flag}: expected MiB as integers, e.g. 300,1536, or none; got ${text}`);
  if (sizes.some((s) => s * MiB > ETCD_MAX_QUOTA - GiB))
    throw new Error(`${flag}: etcd's quota is at most 8 GiB, so sizes up to 7168 MiB; got ${text}`);
  return [...new Set(sizes)];
}

export function parseScenarios(text: string): ScenarioName[] {
  const names = text.split(',').map((s) => s.trim());
  const unknown = names.filter((n) => !(SCENARIO_NAMES as readonly string[]).includes(n));
  if (names.length === 0 || unknown.length)
    throw new Error(`--scenarios: expected a comma-separated list of ${SCENARIO_NAMES.join(', ')}; got ${text}`);
  return SCENARIO_NAMES.filter((n) => names.includes(n));
}

export function options(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      scenarios: { type: 'string' },
      sizes: { type: 'string', default: '300,1536' },
      'restore-sizes': { type: 'string', default: '300' },
      size: { type: 'string', default: '300' },
      'large-sizes': { type: 'string', default: '1536' },
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
  const scenarios = values.scenarios === undefined ? undefined : parseScenarios(values.scenarios);
  const sizes = parseSizes('--sizes', values.sizes);
  const restoreSizes = parseSizes('--restore-sizes', values['restore-sizes']);
  const size = parseSizes('--size', values.size);
  if (size.length !== 1) throw new Error(`--size: expected one size in MiB, e.g. 300; got ${values.size}`);
  const largeSizes = parseSizes('--large-sizes', values['large-sizes']);
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs: expected a positive integer, got ${values.runs}`);
  if (!/^\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(values.network))
    throw new Error(`--network: expected three octets like 127.0.2, got ${values.network}`);
  return {
    scenarios,
    sizes,
    restoreSizes,
    size: size[0]!,
    largeSizes,
    runs,
    out: resolve(values.out),
    root: values.root === undefined ? undefined : resolve(values.root),
    keep: values.keep,
    network: values.network,
  };
}

// Debian's real Prometheus, node_exporter (textfile collector only) and Pushgateway on loopback,
// on ports free at run time, scraping every second: for the monitoring tests. The caller owns `dir`.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';

export interface Sample {
  metric: Record<string, string>;
  value: number;
}

export interface Alert {
  labels: Record<string, string>;
  state: 'pending' | 'firing';
}

export interface PrometheusStack {
  url: string;
  pushgatewayUrl: string;
  /** node_exporter's textfile directory: kbur's textfile goes here. */
  textfileDir: string;
  query(promql: string): Promise<Sample[]>;
  alerts(): Promise<Alert[]>;
  /** Polls `promql` until `done` holds for its samples; throws with the last samples after `timeoutMs`. */
  waitFor(promql: string, done: (samples: Sample[]) => boolean, timeoutMs?: number): Promise<Sample[]>;
  stop(): Promise<void>;
}

const READY_TIMEOUT_MS = 30_000;
const POLL_MS = 250;

/** A port nothing listens on at this moment (the OS picks it). */
export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts the three on `host`. `rules` are loaded as they are but for every `for:`, cut to one
 * second so that alerts fire within a test; `agents` are scraped as job "kbur-agent".
 */
export async function startPrometheusStack(opts: { dir: string; host: string; agents: string[]; rules: string }): Promise<PrometheusStack> {
  const { dir, host } = opts;
  const textfileDir = join(dir, 'textfile');
  await mkdir(textfileDir, { recursive: true });
  await mkdir(join(dir, 'data'), { recursive: true });
  const [promPort, nodePort, pushPort] = [await freePort(host), await freePort(host), await freePort(host)];
  const rules = (await readFile(opts.rules, 'utf8')).replace(/^(\s+)for: .*$/gm, '$1for: 1s');
  await writeFile(join(dir, 'rules.yml'), rules);
  await writeFile(
    join(dir, 'prometheus.yml'),
    stringify({
      global: { scrape_interval: '1s', evaluation_interval: '1s', scrape_timeout: '900ms' },
      rule_files: [join(dir, 'rules.yml')],
      scrape_configs: [
        { job_name: 'kbur-agent', static_configs: [{ targets: opts.agents }] },
        { job_name: 'node', static_configs: [{ targets: [`${host}:${nodePort}`] }] },
        { job_name: 'pushgateway', honor_labels: true, static_configs: [{ targets: [`${host}:${pushPort}`] }] },
      ],
    }),
  );
  const children: ChildProcess[] = [];
  const start = (name: string, args: string[]): void => {
    const fd = openSync(join(dir, `${name}.log`), 'a');
    try {
      const child = spawn(name, args, { stdio: ['ignore', fd, fd] });
      child.once('error', () => {});
      children.push(child);
    } finally {
      closeSync(fd);
    }
  };
  const url = `http://${host}:${promPort}`;
  const pushgatewayUrl = `http://${host}:${pushPort}`;
  const stack: PrometheusStack = {
    url,
    pushgatewayUrl,
    textfileDir,
    async query(promql) {
      const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(promql)}`);
      const body = (await res.json()) as {
        status: string;
        error?: string;
        data: { result: { metric: Record<string, string>; value: [number, string] }[] };
      };
      if (body.status !== 'success') throw new Error(`query ${promql}: ${body.error}`);
      return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
    },
    async alerts() {
      const res = await fetch(`${url}/api/v1/alerts`);
      return ((await res.json()) as { data: { alerts: Alert[] } }).data.alerts;
    },
    async waitFor(promql, done, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const samples = await stack.query(promql);
        if (done(samples)) return samples;
        if (Date.now() > deadline) throw new Error(`${promql} never held after ${timeoutMs} ms; last: ${JSON.stringify(samples)}`);
        await sleep(POLL_MS);
      }
    },
    async stop() {
      await Promise.all(
        children.map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.exitCode !== null || c.signalCode !== null) return resolve();
              c.once('close', () => resolve());
              c.kill('SIGTERM');
            }),
        ),
      );
    },
  };
  try {
    start('prometheus-node-exporter', [
      `--web.listen-address=${host}:${nodePort}`,
      '--collector.disable-defaults',
      '--collector.textfile',
      `--collector.textfile.directory=${textfileDir}`,
    ]);
    start('prometheus-pushgateway', [`--web.listen-address=${host}:${pushPort}`]);
    start('prometheus', [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=${host}:${promPort}`,
    ]);
    await waitReady(`${url}/-/ready`, join(dir, 'prometheus.log'));
    await waitReady(`http://${host}:${nodePort}/metrics`, join(dir, 'prometheus-node-exporter.log'));
    await waitReady(`${pushgatewayUrl}/-/ready`, join(dir, 'prometheus-pushgateway.log'));
  } catch (err) {
    await stack.stop();
    throw err;
  }
  return stack;
}

async function waitReady(url: string, log: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const ok = await fetch(url).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return;
    if (Date.now() > deadline) {
      const tail = await readFile(log, 'utf8').catch(() => '');
      throw new Error(`${url} not ready after ${READY_TIMEOUT_MS} ms\n${tail.split('\n').slice(-15).join('\n')}`);
    }
    await sleep(POLL_MS);
  }
}

/**
 * Scrapes `url` (an agent's http://<health>/metrics) every `everyMs` until `signal` aborts, and
 * returns how long each scrape took, in ms, from the request to the last byte: for the benchmark
 * of a scrape during a backup. A scrape that fails counts as Infinity.
 */
export async function scrapeLatencies(url: string, everyMs: number, signal: AbortSignal): Promise<number[]> {
  const times: number[] = [];
  while (!signal.aborted) {
    const started = performance.now();
    const ok = await fetch(url, { signal }).then(
      async (res) => res.ok && (await res.text()).length > 0,
      () => false,
    );
    if (signal.aborted) break;
    times.push(ok ? performance.now() - started : Infinity);
    await sleep(everyMs, undefined, { signal }).catch(() => undefined);
  }
  return times;
}

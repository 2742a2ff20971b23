import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd3 } from 'etcd3';
import { waitForEtcdHealthy, type Sandbox, type SandboxNode } from '../../test/sandbox/cluster.js';
import { GiB, MiB, log, round, toMiB } from './util.js';

export const VALUE_SIZE = MiB;

export const FILL_IN_FLIGHT = 8;

export const FILL_GROWTH_PER_VALUE = 1.25;

export interface EndpointStatus {
  endpoint: string;
  node: string;
  dbSize: number;
  dbSizeInUse: number | undefined;
  version: string;
  isLeader: boolean;
  raftIndex: number;
}

export async function endpointStatus(sandbox: Sandbox, nodes: SandboxNode[] = sandbox.nodes): Promise<EndpointStatus[]> {
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
export async function etcdClientOn(sandbox: Sandbox, endpoint: string): Promise<Etcd3> {
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

export interface Fill {
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
export async function fillEtcd(sandbox: Sandbox, targetBytes: number, signal: AbortSignal): Promise<Fill> {
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

export const HEALTHY_TIMEOUT_MS = 120_000;

/** waitForEtcdHealthy, in slices, so that Ctrl-C is not left waiting for the whole timeout. */
export async function waitHealthy(sandbox: Sandbox, signal: AbortSignal, timeoutMs = HEALTHY_TIMEOUT_MS): Promise<void> {
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
export async function keyCounts(sandbox: Sandbox, node: SandboxNode): Promise<{ total: number; registry: number }> {
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
export async function clusterIdentity(sandbox: Sandbox): Promise<{ clusterIds: string[]; members: string[] }> {
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

export async function etcdLeader(sandbox: Sandbox): Promise<string | undefined> {
  return (await endpointStatus(sandbox)).find((s) => s.isLeader)?.node;
}

// kbur-agent against a real three-member TLS etcd and real agent processes: mTLS and roles, node
// info, health, the snapshot and archive streams, config errors and reloads, and shutdown.
// The sandbox runs on $KBUR_SANDBOX_NETWORK (e.g. 127.0.1); every address comes from sandbox.nodes.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync, statfsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { get } from 'node:http';
import { connect as netConnect } from 'node:net';
import { hostname, release, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  Metadata,
  credentials,
  loadPackageDefinition,
  status,
  type CallOptions,
  type ChannelCredentials,
  type Client,
  type ClientReadableStream,
  type ServiceError,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { expect } from 'chai';
import { Etcd3 } from 'etcd3';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { parse, stringify } from 'yaml';
import {
  AgentServiceClient,
  type ArchiveKubernetesResponse,
  type ArchiveTrailer,
  type GetNodeInfoResponse,
  type SnapshotEtcdResponse,
  type SnapshotHeader,
  type SnapshotTrailer,
} from '../../proto/gen/kbur/v1/agent.js';
import { KBUR_VERSION } from '../../shared/version.js';
import { wireCheckInterceptor } from '../../shared/wire.js';
import { createSandbox, waitForEtcdHealthy, type KburIdentity, type Sandbox, type SandboxNode } from '../sandbox/cluster.js';

const run = promisify(execFile);
const AGENT_BIN = fileURLToPath(new URL('../../agent/bin.js', import.meta.url));
const UNARY_DEADLINE_MS = 10_000;
const STREAM_DEADLINE_MS = 60_000;
const POLL_MS = 200;
/**
 * Values of 1 MiB put into etcd before the shutdown test. The agent's gRPC server queues up to 16
 * messages of 1 MiB per stream and a paused client buffers 16 more: the snapshot must be larger
 * than those 32 MiB for the agent to be held mid-stream.
 */
const BULK_VALUES = 40;

type Caller = KburIdentity | 'no-cert' | 'plaintext';

interface StreamResult<T> {
  messages: T[];
  error: ServiceError | undefined;
}

interface HealthClient extends Client {
  check(
    req: { service: string },
    md: Metadata,
    opts: Partial<CallOptions>,
    cb: (err: ServiceError | null, res?: { status: string }) => void,
  ): void;
}
type HealthClientConstructor = new (address: string, creds: ChannelCredentials, options?: object) => HealthClient;

const { Health } = (
  loadPackageDefinition(loadSync(healthProtoPath, { keepCase: true, enums: String, defaults: true })) as unknown as {
    grpc: { health: { v1: { Health: HealthClientConstructor } } };
  }
).grpc.health.v1;

/** Resolves once `check` passes; fails with its last error after `timeoutMs`. */
async function eventually(check: () => Promise<void>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
    }
    await sleep(POLL_MS);
  }
}

/** Every message of a server stream and how it ended; resolves once the status came and every message was read. */
function collect<T>(call: ClientReadableStream<T>, onMessage?: (msg: T) => void): Promise<StreamResult<T>> {
  return new Promise((resolve) => {
    const messages: T[] = [];
    let error: ServiceError | undefined;
    let gotStatus = false;
    let ended = false;
    const settle = (): void => {
      if (gotStatus && ended) resolve({ messages, error });
    };
    call.on('data', (msg: T) => {
      messages.push(msg);
      onMessage?.(msg);
    });
    call.on('error', (err: ServiceError) => {
      error = err;
    });
    call.on('status', () => {
      gotStatus = true;
      settle();
    });
    call.on('end', () => {
      ended = true;
      settle();
    });
  });
}

function dataBytes(messages: (SnapshotEtcdResponse | ArchiveKubernetesResponse)[]): Buffer {
  return Buffer.concat(messages.flatMap((m) => (m.kind?.$case === 'data' ? [m.kind.value] : [])));
}

function kburCode(err: ServiceError | undefined): unknown[] {
  return err?.metadata?.get('kbur-code') ?? [];
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function httpGet(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = get(url, { timeout: 10_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> });
        } catch (err) {
          reject(new Error(`${url} answered ${res.statusCode} with no JSON: ${text}`, { cause: err }));
        }
      });
    });
    req.once('timeout', () => req.destroy(new Error(`${url} did not answer within 10 s`)));
    req.once('error', reject);
  });
}

/** True if something accepts TCP connections at host:port. */
function listening(address: string): Promise<boolean> {
  const i = address.lastIndexOf(':');
  return new Promise((resolve) => {
    const socket = netConnect({ host: address.slice(0, i), port: Number(address.slice(i + 1)) });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Opens a raw TLS connection to an agent, as an HTTP/2 client would, and reports how it went:
 * 'open' once the server sent its HTTP/2 preface, else the TLS alert's error code, or 'closed'
 * if the server hung up without a word.
 */
function tlsOutcome(address: string, tls: { ca: Buffer; cert?: Buffer; key?: Buffer }): Promise<string> {
  const i = address.lastIndexOf(':');
  return new Promise((resolve) => {
    const socket = tlsConnect({
      host: address.slice(0, i),
      port: Number(address.slice(i + 1)),
      servername: 'localhost',
      ALPNProtocols: ['h2'],
      ...tls,
    });
    const timer = setTimeout(() => finish('no answer'), 5_000);
    const finish = (outcome: string): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(outcome);
    };
    // TLS 1.3: the client's side of the handshake completes before the server has checked the
    // client's certificate; the server's verdict is its preface, an alert or a hang-up.
    socket.once('data', () => finish('open'));
    socket.once('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message));
    socket.once('close', () => finish('closed'));
  });
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
}

async function runAgentProcess(config: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [AGENT_BIN, '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  clearTimeout(killer);
  return { code, stdout, stderr };
}

/** Replaces a file the way an operator's config management does: a temporary file, then a rename over it. */
async function replaceFile(path: string, text: string): Promise<void> {
  await writeFile(`${path}.tmp`, text, { mode: 0o600 });
  await rename(`${path}.tmp`, path);
}

describe('kbur-agent', function () {
  this.timeout(120_000);
  let root: string;
  let sandbox: Sandbox | undefined;
  let clients: Client[] = [];

  before(async function () {
    root = await mkdtemp(join(tmpdir(), 'kbur-agent-test-'));
    sandbox = await createSandbox({ root: join(root, 'sandbox') });
    await sandbox.startAgents();
  });

  after(async function () {
    await sandbox?.stop();
    await rm(root, { recursive: true, force: true });
  });

  afterEach(function () {
    for (const c of clients) c.close();
    clients = [];
  });

  function sb(): Sandbox {
    if (!sandbox) throw new Error('the sandbox did not start');
    return sandbox;
  }

  async function channelCredentials(who: Caller): Promise<ChannelCredentials> {
    if (who === 'plaintext') return credentials.createInsecure();
    const ca = await readFile(sb().kburPki.ca);
    if (who === 'no-cert') return credentials.createSsl(ca);
    const pair = sb().kburPki.cert(who);
    return credentials.createSsl(ca, await readFile(pair.key), await readFile(pair.cert));
  }

  /** A client of one node's agent with its own connection (no subchannel shared with other tests' clients). */
  async function agent(node: SandboxNode, who: Caller): Promise<AgentServiceClient> {
    const client = new AgentServiceClient(node.agentAddress, await channelCredentials(who), {
      'grpc.use_local_subchannel_pool': 1,
      'grpc.max_receive_message_length': 16 << 20,
      // Our versions on every call, as kbur sends them (the agent refuses a caller of another wire contract).
      interceptors: [wireCheckInterceptor(node.name)],
    });
    clients.push(client);
    return client;
  }

  async function health(node: SandboxNode, who: Caller): Promise<HealthClient> {
    const client = new Health(node.agentAddress, await channelCredentials(who), { 'grpc.use_local_subchannel_pool': 1 });
    clients.push(client);
    return client;
  }

  function getNodeInfo(client: AgentServiceClient, countKeys = true): Promise<GetNodeInfoResponse> {
    return new Promise((resolve, reject) => {
      client.getNodeInfo({ countKeys, certificates: false }, new Metadata(), { deadline: Date.now() + UNARY_DEADLINE_MS }, (err, res) =>
        err ? reject(err) : resolve(res),
      );
    });
  }

  async function nodeInfoError(client: AgentServiceClient): Promise<ServiceError> {
    const err = await getNodeInfo(client).then(
      () => undefined,
      (e: ServiceError) => e,
    );
    if (!err) throw new Error('GetNodeInfo succeeded');
    return err;
  }

  function snapshot(client: AgentServiceClient): Promise<StreamResult<SnapshotEtcdResponse>> {
    return collect(client.snapshotEtcd({}, new Metadata(), { deadline: Date.now() + STREAM_DEADLINE_MS }));
  }

  function archive(client: AgentServiceClient): Promise<StreamResult<ArchiveKubernetesResponse>> {
    return collect(client.archiveKubernetes({}, new Metadata(), { deadline: Date.now() + STREAM_DEADLINE_MS }));
  }

  function healthCheck(client: HealthClient, service: string): Promise<string> {
    return new Promise((resolve, reject) => {
      client.check({ service }, new Metadata(), { deadline: Date.now() + UNARY_DEADLINE_MS }, (err, res) =>
        err ? reject(err) : resolve(res?.status ?? ''),
      );
    });
  }

  /** Asserts that a stream was refused before the agent sent anything. */
  function expectRefused<T>(result: StreamResult<T>, code: status): ServiceError {
    expect(result.error, 'the call should have failed').to.not.equal(undefined);
    const err = result.error!;
    expect(err.code, `${status[err.code]}: ${err.details}`).to.equal(code);
    expect(result.messages, 'messages received').to.have.length(0);
    return err;
  }

  function expectWholeSnapshot(result: StreamResult<SnapshotEtcdResponse>): {
    header: SnapshotHeader;
    data: Buffer;
    trailer: SnapshotTrailer;
  } {
    expect(result.error, result.error && `${status[result.error.code]}: ${result.error.details}`).to.equal(undefined);
    const kinds = result.messages.map((m) => m.kind?.$case);
    expect(kinds[0]).to.equal('header');
    expect(kinds.at(-1)).to.equal('trailer');
    expect(
      kinds.slice(1, -1).every((k) => k === 'data'),
      `message kinds: ${kinds.join(',')}`,
    ).to.equal(true);
    const first = result.messages[0]!.kind;
    const last = result.messages.at(-1)!.kind;
    if (first?.$case !== 'header' || last?.$case !== 'trailer') throw new Error('unreachable');
    return { header: first.value, data: dataBytes(result.messages), trailer: last.value };
  }

  function agentLog(node: SandboxNode): Promise<string> {
    return readFile(join(sb().root, 'logs', `agent-${node.name}.log`), 'utf8').catch(() => '');
  }

  describe('mTLS and roles', function () {
    it('refuses a client that presents no certificate: the TLS handshake fails and no data flows', async function () {
      const node = sb().nodes[0];
      const ca = await readFile(sb().kburPki.ca);
      expect(await tlsOutcome(node.agentAddress, { ca })).to.equal('ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED');

      const err = expectRefused(await snapshot(await agent(node, 'no-cert')), status.UNAVAILABLE);
      expect(kburCode(err), 'the agent never answered, so no kbur-code').to.deep.equal([]);
    });

    it('refuses a plaintext client', async function () {
      const node = sb().nodes[0];
      const err = expectRefused(await snapshot(await agent(node, 'plaintext')), status.UNAVAILABLE);
      expect(kburCode(err)).to.deep.equal([]);
      const info = await nodeInfoError(await agent(node, 'plaintext'));
      expect(info.code).to.equal(status.UNAVAILABLE);
    });

    it('refuses a certificate from another CA, even one that claims the admin CN', async function () {
      const node = sb().nodes[0];
      const rogue = sb().kburPki.cert('rogue-admin');
      const [ca, cert, key] = await Promise.all([readFile(sb().kburPki.ca), readFile(rogue.cert), readFile(rogue.key)]);
      const admin = sb().kburPki.cert('kbur-admin');
      const [adminCert, adminKey] = await Promise.all([readFile(admin.cert), readFile(admin.key)]);
      expect(await tlsOutcome(node.agentAddress, { ca, cert: adminCert, key: adminKey }), 'the real admin cert').to.equal('open');
      // Node's TLS server checks the chain after the handshake and hangs up on a certificate it does not trust.
      expect(await tlsOutcome(node.agentAddress, { ca, cert, key })).to.match(/^closed$|ECONNRESET|ALERT/);

      const err = expectRefused(await snapshot(await agent(node, 'rogue-admin')), status.UNAVAILABLE);
      expect(kburCode(err)).to.deep.equal([]);
      const info = await nodeInfoError(await agent(node, 'rogue-admin'));
      expect(info.code).to.equal(status.UNAVAILABLE);
      expect(kburCode(info)).to.deep.equal([]);
    });

    it('refuses a monitor cert that asks for a snapshot, before sending one byte', async function () {
      const err = expectRefused(await snapshot(await agent(sb().nodes[0], 'monitoring')), status.PERMISSION_DENIED);
      expect(kburCode(err)).to.deep.equal(['PERMISSION_DENIED']);
      expect(err.details).to.contain('SnapshotEtcd').and.contain('monitoring').and.contain('monitor');
    });

    it('refuses a monitor cert that asks for the kubernetes archive', async function () {
      const err = expectRefused(await archive(await agent(sb().nodes[0], 'monitoring')), status.PERMISSION_DENIED);
      expect(kburCode(err)).to.deep.equal(['PERMISSION_DENIED']);
    });

    it('refuses a valid certificate whose CN is not listed, and names the CN', async function () {
      const client = await agent(sb().nodes[0], 'stranger');
      const info = await nodeInfoError(client);
      expect(info.code).to.equal(status.PERMISSION_DENIED);
      expect(kburCode(info)).to.deep.equal(['PERMISSION_DENIED']);
      expect(info.details).to.contain('"stranger"');
      expect(info.metadata.get('kbur-hint')[0]).to.contain('stranger');

      const err = expectRefused(await snapshot(client), status.PERMISSION_DENIED);
      expect(err.details).to.contain('"stranger"');
    });

    it('lets a monitor cert read node info, without a key count', async function () {
      const info = await getNodeInfo(await agent(sb().nodes[1], 'monitoring'), false);
      expect(info.node).to.equal(sb().nodes[1].name);
    });

    it('lets an operator cert take a snapshot', async function () {
      const { header, trailer } = expectWholeSnapshot(await snapshot(await agent(sb().nodes[1], 'kbur-operator')));
      expect(header.member?.name).to.equal(sb().nodes[1].name);
      expect(trailer.size).to.be.greaterThan(0);
    });
  });

  describe('node info', function () {
    it('reports the node, its disks and its etcd member; exactly one member leads', async function () {
      const infos = await Promise.all(sb().nodes.map(async (node) => getNodeInfo(await agent(node, 'kbur-admin'))));
      const leaderIds = new Set<string>();
      for (const [i, info] of infos.entries()) {
        const node = sb().nodes[i]!;
        expect(info.node).to.equal(node.name);
        expect(info.hostname).to.equal(hostname());
        expect(info.kernel).to.equal(release());
        expect(info.agentVersion).to.equal(KBUR_VERSION);
        expect(info.etcdDataDisk?.path).to.equal(node.dataDir);
        expect(info.etcdDataDisk?.freeBytes).to.be.greaterThan(0);
        expect(info.stateDisk?.path).to.equal(node.stateDir);
        expect(info.stateDisk?.freeBytes).to.be.greaterThan(0);
        // statfs of the path itself: the same figures as df's for the mount that holds it.
        const fs = statfsSync(node.dataDir);
        expect(Math.abs(info.etcdDataDisk!.freeBytes - fs.bavail * fs.bsize)).to.be.lessThan(256 << 20);
        expect(info.etcdDataDisk!.sizeBytes).to.equal(fs.blocks * fs.bsize);
        expect(info.etcdDataDisk!.mount, 'the mount that holds the data dir').to.not.equal('');

        const etcd = info.etcd;
        expect(etcd, `${node.name} etcd`).to.not.equal(undefined);
        expect(etcd!.reachable, etcd!.error).to.equal(true);
        expect(etcd!.name).to.equal(node.name);
        expect(etcd!.endpoint).to.equal(node.clientUrl);
        expect(etcd!.version).to.match(/^3\.4\.\d+$/);
        expect(etcd!.memberId).to.match(/^[0-9a-f]+$/);
        expect(etcd!.leaderId).to.match(/^[0-9a-f]+$/);
        expect(etcd!.revision).to.be.greaterThan(0);
        expect(etcd!.keyCount, 'asked to count keys').to.be.at.least(sb().seededKeys);
        expect(etcd!.members.map((m) => [m.name, m.peerUrls, m.clientUrls])).to.have.deep.members(
          sb().nodes.map((n) => [n.name, [n.peerUrl], [n.clientUrl]]),
        );
        expect(etcd!.members.find((m) => m.name === node.name)?.id).to.equal(etcd!.memberId);
        leaderIds.add(etcd!.leaderId);
      }
      const leaders = infos.filter((i) => i.etcd?.isLeader);
      expect(
        leaders.map((l) => l.node),
        'members that say they lead',
      ).to.have.length(1);
      expect([...leaderIds]).to.deep.equal([leaders[0]!.etcd!.memberId]);
    });

    it('counts the keys only when asked: a backup does not wait for a walk of the whole index', async function () {
      const info = await getNodeInfo(await agent(sb().nodes[0], 'kbur-admin'), false);
      expect(info.etcd!.reachable, info.etcd!.error).to.equal(true);
      expect(info.etcd!.keyCount).to.equal(-1);
    });
  });

  describe('health', function () {
    it('answers gRPC health checks from any valid cert, even a monitor one', async function () {
      const client = await health(sb().nodes[0], 'monitoring');
      expect(await healthCheck(client, '')).to.equal('SERVING');
      await eventually(async () => {
        expect(await healthCheck(client, 'kbur.v1.AgentService')).to.equal('SERVING');
      }, 15_000);
    });

    it('reports not ready on /readyz while the local etcd is stopped, and ready again once it is back', async function () {
      const node = sb().nodes[2];
      expect((await httpGet(`http://${node.healthAddress}/healthz`)).status).to.equal(200);
      const ready = await httpGet(`http://${node.healthAddress}/readyz`);
      expect(ready.status).to.equal(200);
      expect(ready.body.node).to.equal(node.name);

      const manifest = join(node.manifestsDir, 'etcd.yaml');
      const aside = join(node.dir, 'etcd.yaml.aside');
      await rename(manifest, aside);
      try {
        await sb().kubelet.waitFor(node.name, 'etcd', 'stopped');
        await eventually(async () => {
          const res = await httpGet(`http://${node.healthAddress}/readyz`);
          expect(res.status).to.equal(503);
          expect(res.body.node).to.equal(node.name);
          expect(res.body.error).to.be.a('string').with.length.greaterThan(0);
        }, 15_000);
        expect((await httpGet(`http://${node.healthAddress}/healthz`)).status, '/healthz only says the process is up').to.equal(200);
      } finally {
        await rename(aside, manifest);
      }
      await sb().kubelet.waitFor(node.name, 'etcd', 'running');
      await waitForEtcdHealthy(sb(), [node.clientUrl], 30_000);
      await eventually(async () => {
        const res = await httpGet(`http://${node.healthAddress}/readyz`);
        expect(res.status).to.equal(200);
        expect(res.body.node).to.equal(node.name);
      }, 30_000);
    });
  });

  describe('SnapshotEtcd', function () {
    it('streams a header, the snapshot and a trailer whose hashes hold and which etcdctl reads', async function () {
      const node = sb().nodes[0];
      const { header, data, trailer } = expectWholeSnapshot(await snapshot(await agent(node, 'kbur-admin')));
      expect(header.member?.name).to.equal(node.name);
      expect(header.revision).to.be.greaterThan(0);
      expect(trailer.keyCount, 'keys at the header revision, counted while it streamed').to.be.at.least(sb().seededKeys);

      expect(trailer.size).to.equal(data.length);
      expect(trailer.sha256, 'the agent leaves hashing to the receiver').to.equal('');
      expect(data.length % 512).to.equal(32);
      expect(data.subarray(-32).toString('hex'), 'etcd integrity hash').to.equal(sha256(data.subarray(0, -32)));

      const dir = await mkdtemp(join(root, 'snapshot-'));
      const file = join(dir, 'snapshot.db');
      await writeFile(file, data, { mode: 0o600 });
      const { stdout } = await run('etcdctl', ['snapshot', 'status', file, '-w', 'json'], {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ETCDCTL_API: '3' },
      });
      const st = JSON.parse(stdout) as { revision: number; totalKey: number };
      expect(st.revision).to.equal(header.revision);
      await rm(dir, { recursive: true, force: true });
    });
  });

  describe('ArchiveKubernetes', function () {
    /** The node's archive, written to <dir>/kubernetes.tar and extracted with plain tar into <dir>/out. */
    async function extract(node: SandboxNode): Promise<{ dir: string; tar: string; trailer: ArchiveTrailer }> {
      const result = await archive(await agent(node, 'kbur-operator'));
      expect(result.error, result.error && `${status[result.error.code]}: ${result.error.details}`).to.equal(undefined);
      const last = result.messages.at(-1)?.kind;
      if (last?.$case !== 'trailer') throw new Error(`the archive stream of ${node.name} did not end with a trailer`);
      const data = dataBytes(result.messages);
      expect(last.value.size).to.equal(data.length);
      expect(last.value.sha256).to.equal(sha256(data));

      const dir = await mkdtemp(join(root, `archive-${node.name}-`));
      const tar = join(dir, 'kubernetes.tar');
      await writeFile(tar, data, { mode: 0o600 });
      await mkdir(join(dir, 'out'));
      await run('tar', ['-xpf', tar, '-C', join(dir, 'out')]);
      return { dir, tar, trailer: last.value };
    }

    it('archives /etc/kubernetes so that plain tar restores every file with its mode and content', async function () {
      const node = sb().nodes[0];
      const { dir, tar, trailer } = await extract(node);
      const out = join(dir, 'out');
      const entries = await readdir(node.kubernetesDir, { recursive: true, withFileTypes: true });
      let files = 0;
      for (const entry of entries) {
        const rel = relative(node.kubernetesDir, join(entry.parentPath, entry.name));
        const [want, got] = await Promise.all([lstat(join(node.kubernetesDir, rel)), lstat(join(out, rel)).catch(() => undefined)]);
        expect(got, `${rel} in the archive`).to.not.equal(undefined);
        expect((got!.mode & 0o177777).toString(8), `mode of ${rel}`).to.equal((want.mode & 0o177777).toString(8));
        if (entry.isFile()) {
          files++;
          expect(sha256(await readFile(join(out, rel))), `content of ${rel}`).to.equal(
            sha256(await readFile(join(node.kubernetesDir, rel))),
          );
        }
      }
      const keys = entries.filter(
        (e) => e.isFile() && e.name.endsWith('.key') && relative(node.kubernetesDir, e.parentPath).startsWith('pki'),
      );
      expect(keys.length, 'private keys under pki/').to.be.greaterThan(0);
      for (const key of keys) {
        const rel = relative(node.kubernetesDir, join(key.parentPath, key.name));
        expect(((await stat(join(out, rel))).mode & 0o777).toString(8), rel).to.equal('600');
      }
      expect(files).to.be.greaterThan(0);
      expect(trailer.fileCount).to.be.greaterThan(0);
      const listed = (await run('tar', ['-tf', tar])).stdout.split('\n').filter(Boolean);
      expect(trailer.fileCount, 'fileCount = entries in the tar').to.equal(listed.length);
      expect(trailer.kubernetesDir).to.equal(node.kubernetesDir);
      expect(trailer.kubeadmConfigFiles).to.deep.equal(['kubeadm-config.yaml']);
      await rm(dir, { recursive: true, force: true });
    });

    it('reports no kubeadm config on a node that has none', async function () {
      const { dir, trailer } = await extract(sb().nodes[1]);
      expect(trailer.fileCount).to.be.greaterThan(0);
      expect(trailer.kubeadmConfigFiles).to.deep.equal([]);
      await rm(dir, { recursive: true, force: true });
    });
  });

  describe('config errors at startup', function () {
    let dir: string;
    let base: Record<string, unknown>;
    let listen: string;
    let healthAddress: string;

    before(async function () {
      dir = await mkdtemp(join(root, 'configs-'));
      const node = sb().nodes[0];
      // Addresses no agent uses, so that "nothing listens" means this process never bound them.
      listen = `${node.ip}:7444`;
      healthAddress = `${node.ip}:9444`;
      base = { ...(parse(await readFile(node.agentConfig, 'utf8')) as Record<string, unknown>), listen, health: healthAddress };
    });

    async function expectOneError(file: string, names: string): Promise<string> {
      const { code, stdout, stderr } = await runAgentProcess(file);
      expect(code, `exit code; stderr:\n${stderr}`).to.equal(2);
      const lines = stderr.trimEnd().split('\n');
      expect(lines, `stderr:\n${stderr}`).to.have.length(2);
      expect(lines[0]).to.match(/^kbur-agent: /);
      expect(lines[0]).to.contain(names);
      expect(lines[1]).to.match(/^\s*what to do: \S/);
      expect(stdout, 'stdout').to.equal('');
      expect(await listening(listen), `${listen} listening`).to.equal(false);
      expect(await listening(healthAddress), `${healthAddress} listening`).to.equal(false);
      return lines[0]!;
    }

    async function config(name: string, text: string): Promise<string> {
      const file = join(dir, name);
      await writeFile(file, text, { mode: 0o600 });
      return file;
    }

    it('exits 2 naming a config file that does not exist', async function () {
      const file = join(dir, 'missing.yaml');
      expect(await expectOneError(file, file)).to.contain('does not exist');
    });

    it('exits 2 naming the line of a YAML syntax error', async function () {
      const file = await config('syntax.yaml', `${stringify(base)}clients: [kbur-admin: admin\n`);
      expect(await expectOneError(file, file)).to.match(/YAML syntax error/);
    });

    it('exits 2 naming an unknown key', async function () {
      const file = await config('unknown.yaml', stringify({ ...base, snapshotDir: '/var/backups' }));
      expect(await expectOneError(file, file)).to.contain('unknown key "snapshotDir"');
    });

    it('exits 2 naming a client mapped to a role that does not exist', async function () {
      const file = await config('role.yaml', stringify({ ...base, clients: { 'kbur-admin': 'root' } }));
      expect(await expectOneError(file, file)).to.contain('clients.kbur-admin');
    });

    it('exits 2 naming a listen address that is not host:port', async function () {
      const file = await config('listen.yaml', stringify({ ...base, listen: 5 }));
      expect(await expectOneError(file, file)).to.contain('"listen"');
    });

    it('exits 2 naming an etcd manifest that does not exist', async function () {
      const manifest = join(dir, 'no-such-manifests', 'etcd.yaml');
      const file = await config('manifest.yaml', stringify({ ...base, etcd: { manifest } }));
      expect(await expectOneError(file, manifest)).to.contain('does not exist');
    });
  });

  describe('config reload', function () {
    it('applies an edited config within seconds, refuses a broken one and keeps the last good one', async function () {
      const node = sb().nodes[1];
      const original = await readFile(node.agentConfig, 'utf8');
      const operator = await agent(node, 'kbur-operator');
      const admin = await agent(node, 'kbur-admin');
      expectWholeSnapshot(await snapshot(operator));

      const withoutOperator = parse(original) as { clients: Record<string, string> };
      delete withoutOperator.clients['kbur-operator'];
      try {
        await replaceFile(node.agentConfig, stringify(withoutOperator));
        await eventually(async () => {
          const err = expectRefused(await snapshot(operator), status.PERMISSION_DENIED);
          expect(kburCode(err)).to.deep.equal(['PERMISSION_DENIED']);
          expect(err.details).to.contain('"kbur-operator"');
        }, 15_000);

        const refusedBefore = (await agentLog(node)).split('config reload refused').length;
        await replaceFile(node.agentConfig, `${stringify(withoutOperator)}clients: [oops\n`);
        await eventually(async () => {
          expect((await agentLog(node)).split('config reload refused').length).to.be.greaterThan(refusedBefore);
        }, 15_000);
        const refusal = (await agentLog(node))
          .split('\n')
          .filter((l) => l.includes('config reload refused'))
          .at(-1)!;
        expect(JSON.parse(refusal)).to.include({ file: node.agentConfig });

        expectWholeSnapshot(await snapshot(admin));
        expect((await getNodeInfo(admin)).node).to.equal(node.name);
        expectRefused(await snapshot(operator), status.PERMISSION_DENIED);
      } finally {
        await replaceFile(node.agentConfig, original);
      }
      await eventually(async () => {
        expectWholeSnapshot(await snapshot(operator));
      }, 15_000);
    });
  });

  describe('shutdown', function () {
    it('ends a snapshot stream cut by SIGTERM with an error, never a trailer, and exits 0', async function () {
      const node = sb().nodes[0];
      const certs = join(node.kubernetesDir, 'pki', 'etcd');
      const [rootCertificate, certChain, privateKey] = await Promise.all(
        ['ca.crt', 'healthcheck-client.crt', 'healthcheck-client.key'].map((f) => readFile(join(certs, f))),
      );
      const etcd = new Etcd3({
        hosts: sb().nodes.map((n) => n.clientUrl),
        credentials: { rootCertificate, certChain, privateKey },
        grpcOptions: { 'grpc.ssl_target_name_override': 'localhost' },
      });
      // The sandbox does not tell how its agents exited: run this node's agent here instead.
      await sb().stopAgent(node.name);
      const logFile = join(sb().root, 'logs', `agent-${node.name}.log`);
      const logStart = (await stat(logFile)).size;
      const fd = openSync(logFile, 'a');
      const child = spawn(process.execPath, [AGENT_BIN, '--config', node.agentConfig], { stdio: ['ignore', fd, fd] });
      closeSync(fd);
      const exited = exitOf(child);
      try {
        // Each value stays under etcd's 1.5 MiB request limit.
        const value = Buffer.alloc(1 << 20, 'x');
        await Promise.all(Array.from({ length: BULK_VALUES }, (_, i) => etcd.put(`/registry/bulk/${i}`).value(value)));
        await eventually(async () => {
          expect((await httpGet(`http://${node.healthAddress}/healthz`)).status).to.equal(200);
        }, 30_000);

        const client = await agent(node, 'kbur-admin');
        const call = client.snapshotEtcd({}, new Metadata(), { deadline: Date.now() + STREAM_DEADLINE_MS });
        let header: SnapshotHeader | undefined;
        let gotHeader!: () => void;
        const headerSeen = new Promise<void>((resolve) => (gotHeader = resolve));
        const done = collect(call, (msg) => {
          if (msg.kind?.$case !== 'header') return;
          header = msg.kind.value;
          // Stop reading: HTTP/2 flow control now holds the agent mid-stream.
          call.pause();
          gotHeader();
        });
        await headerSeen;
        let buffered = -1;
        await eventually(async () => {
          const now = call.readableLength;
          const stable = now === buffered;
          buffered = now;
          expect(stable, 'the client buffer stopped growing').to.equal(true);
        }, 10_000);

        const agentLog = (await readFile(logFile, 'utf8')).slice(logStart);
        expect(agentLog, 'the agent is held mid-stream').to.contain('stream started').and.not.contain('stream finished');
        const signalled = Date.now();
        child.kill('SIGTERM');
        await eventually(async () => {
          const log = (await readFile(logFile, 'utf8')).slice(logStart);
          expect(log).to.contain('stream failed');
        }, 15_000);
        call.resume();
        const { messages, error } = await done;

        expect(
          messages.some((m) => m.kind?.$case === 'trailer'),
          'a trailer after SIGTERM',
        ).to.equal(false);
        expect(error, 'the stream should end with an error').to.not.equal(undefined);
        expect(header, 'header').to.not.equal(undefined);
        expect(dataBytes(messages).length, 'bytes received, of a snapshot larger than the bulk values').to.be.lessThan(BULK_VALUES << 20);
        expect([status.UNAVAILABLE, status.CANCELLED], `${status[error!.code]}: ${error!.details}`).to.include(error!.code);
        if (error!.code === status.UNAVAILABLE) {
          expect(error!.details).to.match(/shutting down/);
          expect(kburCode(error)).to.deep.equal(['UNAVAILABLE']);
        }
        const code = await Promise.race([exited, sleep(15_000 - (Date.now() - signalled), 'still running' as const)]);
        expect(code, 'agent exit code within 15 s of SIGTERM').to.equal(0);
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        await exited;
        await etcd.delete().prefix('/registry/bulk/');
        etcd.close();
        await sb().startAgents([node.name]);
      }
    });
  });
});

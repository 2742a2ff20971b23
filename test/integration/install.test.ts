import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Metadata, Server, ServerCredentials, credentials, status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { parse, stringify } from 'yaml';
import { AgentServiceClient, type GetNodeInfoResponse } from '../../proto/gen/kbur/v1/agent.js';
import { runPki } from '../../coordinator/pki.js';
import { AgentService } from '../../shared/agent-service.js';
import type { Manifest } from '../../shared/manifest.js';
import { KBUR_VERSION } from '../../shared/version.js';
import { META_KBUR_VERSION, META_WIRE_VERSION, WIRE_VERSION, versionMetadata } from '../../shared/wire.js';
import { issue } from '../../shared/x509.js';
import { runKbur } from '../helpers/kbur.js';
import { createSandbox, type Sandbox } from '../sandbox/cluster.js';

const exec = promisify(execFile);
const AGENT_BIN = fileURLToPath(new URL('../../agent/bin.js', import.meta.url));
const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/backup-sets', import.meta.url));

interface TlsFiles {
  ca: string;
  cert: string;
  key: string;
}

/** One GetNodeInfo over mTLS with these files; resolves with its error, or undefined when the agent answered. */
async function nodeInfoError(address: string, tls: TlsFiles, md: Metadata = versionMetadata()): Promise<ServiceError | undefined> {
  const [ca, key, cert] = await Promise.all([readFile(tls.ca), readFile(tls.key), readFile(tls.cert)]);
  const client = new AgentServiceClient(address, credentials.createSsl(ca, key, cert), { 'grpc.use_local_subchannel_pool': 1 });
  try {
    return await new Promise((resolve) =>
      client.getNodeInfo({ countKeys: false, certificates: false }, md, { deadline: Date.now() + 10_000 }, (err) =>
        resolve(err ?? undefined),
      ),
    );
  } finally {
    client.close();
  }
}

function httpOk(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = get(url, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.setTimeout(1000, () => req.destroy());
  });
}

describe('installing kbur: kbur pki, kbur init, kbur-agent --print-config, versions', function () {
  this.timeout(180_000);
  let root: string;
  let sandbox: Sandbox;
  const extraAgents: ChildProcess[] = [];

  before(async function () {
    root = await mkdtemp(join(tmpdir(), 'kbur-install-test-'));
    sandbox = await createSandbox({ root, seed: false });
    await sandbox.startAgents();
  });

  after(async function () {
    for (const child of extraAgents) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await Promise.all(extraAgents.map((c) => (c.exitCode === null && c.signalCode === null ? once(c, 'exit') : undefined)));
    await sandbox?.stop();
    await rm(root, { recursive: true, force: true });
  });

  const node1 = (): Sandbox['nodes'][number] => sandbox.nodes[0]!;
  const pki = (name: string): TlsFiles => ({ ca: sandbox.kburPki.ca, ...sandbox.kburPki.cert(name as 'kbur-admin') });

  /** A second agent on node-1's address at other ports, with node-1's config changed by `edit`; resolves once it is healthy. */
  async function startExtraAgent(port: number, edit: (config: Record<string, unknown>) => void): Promise<string> {
    const config = parse(await readFile(node1().agentConfig, 'utf8')) as Record<string, unknown>;
    const address = `${node1().ip}:${port}`;
    const health = `${node1().ip}:${port + 1}`;
    Object.assign(config, { listen: address, health, stateDir: join(root, `state-${port}`) });
    edit(config);
    const file = join(root, `agent-${port}.yaml`);
    await writeFile(file, stringify(config), { mode: 0o600 });
    const child = spawn(process.execPath, [AGENT_BIN, '--config', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    extraAgents.push(child);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const deadline = Date.now() + 30_000;
    while (!(await httpOk(`http://${health}/healthz`))) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`extra agent on ${address} did not start: ${stderr}`);
      await sleep(200);
    }
    return address;
  }

  describe('kbur pki', function () {
    it('issues certificates that openssl verifies against the CA, each for its purpose only', async function () {
      const dir = sandbox.kburPki.dir;
      const server = pki('agent-node-1');
      const client = pki('kbur-admin');
      await exec('openssl', ['verify', '-CAfile', sandbox.kburPki.ca, '-purpose', 'sslserver', server.cert]);
      await exec('openssl', ['verify', '-CAfile', sandbox.kburPki.ca, '-purpose', 'sslclient', client.cert]);
      const wrong = await exec('openssl', ['verify', '-CAfile', sandbox.kburPki.ca, '-purpose', 'sslclient', server.cert]).catch(
        (e: { stdout: string; stderr: string }) => e,
      );
      expect(`${wrong.stdout}${wrong.stderr}`).to.match(/unsuitable certificate purpose/);
      const list = await runKbur(['--json', 'pki', 'list', '--dir', dir]);
      expect(list.code, list.stderr).to.equal(0);
      const rows = JSON.parse(list.stdout) as { file: string; isCA: boolean; usages: string[]; daysLeft: number; keyType: string }[];
      expect(rows[0]).to.include({ file: 'ca.crt', isCA: true, keyType: 'ec-p256' });
      expect(rows.find((r) => r.file === 'agent-node-1.crt')!.usages).to.deep.equal(['serverAuth']);
      expect(rows.find((r) => r.file === 'kbur-admin.crt')!.usages).to.deep.equal(['clientAuth']);
      expect(rows.find((r) => r.file === 'kbur-admin.crt')!.daysLeft).to.be.within(363, 365);
    });

    it("refuses an agent's server certificate used by a client: the TLS handshake fails, no role is even looked up", async function () {
      const err = await nodeInfoError(node1().agentAddress, pki('agent-node-1'));
      expect(err?.code, err?.details).to.equal(status.UNAVAILABLE);
      // The same agent, the same CA: a client certificate gets through.
      expect(await nodeInfoError(node1().agentAddress, pki('kbur-admin'))).to.equal(undefined);
    });

    it('refuses a client certificate used by an agent as its server certificate', async function () {
      // A clientAuth certificate with node-1's address in it: only its purpose is wrong.
      const pem = await issue(
        { cn: 'kbur-admin-as-server', usages: ['clientAuth'], ips: [node1().ip], days: 1 },
        {
          cert: await readFile(sandbox.kburPki.ca, 'utf8'),
          key: await readFile(join(sandbox.kburPki.dir, 'ca.key'), 'utf8'),
        },
      );
      const cert = join(root, 'client-as-server.crt');
      const key = join(root, 'client-as-server.key');
      await Promise.all([writeFile(cert, pem.cert), writeFile(key, pem.key, { mode: 0o600 })]);
      const address = await startExtraAgent(7643, (c) => Object.assign(c, { tls: { ca: sandbox.kburPki.ca, cert, key } }));
      const err = await nodeInfoError(address, pki('kbur-admin'));
      expect(err?.code, err?.details).to.equal(status.UNAVAILABLE);
      expect(err?.details).to.match(/unsuitable certificate purpose/);
    });

    it('issues Ed25519 certificates that work for the agent and its clients (grpc-js accepts them)', async function () {
      const dir = sandbox.kburPki.dir;
      await runPki({ action: 'agent', dir, node: 'ed-node', ips: [node1().ip], keyType: 'ed25519' });
      await runPki({ action: 'client', dir, name: 'ed-admin', keyType: 'ed25519' });
      const address = await startExtraAgent(7743, (c) =>
        Object.assign(c, {
          tls: { ca: sandbox.kburPki.ca, cert: join(dir, 'agent-ed-node.crt'), key: join(dir, 'agent-ed-node.key') },
          clients: { 'ed-admin': 'admin' },
        }),
      );
      expect(await nodeInfoError(address, pki('ed-admin'))).to.equal(undefined);
    });

    it('never overwrites: a second init, or a name already issued, is refused and the files stay', async function () {
      const before = await readFile(sandbox.kburPki.ca, 'utf8');
      const init = await runKbur(['pki', 'init', '--dir', sandbox.kburPki.dir]);
      expect(init.code).to.equal(9);
      expect(init.stderr).to.match(/ca\.crt already exists; kbur pki never overwrites/);
      const again = await runKbur(['pki', 'client', 'kbur-admin', '--dir', sandbox.kburPki.dir]);
      expect(again.code).to.equal(9);
      expect(await readFile(sandbox.kburPki.ca, 'utf8')).to.equal(before);
      const bad = await runKbur(['pki', 'agent', 'node-9', '--ip', '10.0.0.300', '--dir', sandbox.kburPki.dir]);
      expect(bad.code).to.equal(2);
      expect(bad.stderr).to.match(/ips\.0 "10\.0\.0\.300": expected an IPv4 or IPv6 address/);
    });
  });

  describe('kbur init', function () {
    it('writes a kbur.yaml from one agent with which kbur backup works unchanged, and never overwrites it', async function () {
      const config = join(root, 'init', 'kbur.yaml');
      const repo = join(root, 'init', 'repo');
      const args = ['init', '--agent', node1().agentAddress, '--output', config, '--cluster', 'sandbox', '--repository', repo];
      const init = await runKbur([...args, '--pki', sandbox.kburPki.dir]);
      expect(init.code, init.stderr).to.equal(0);
      const written = await readFile(config, 'utf8');
      expect(written).to.match(/^# kbur\.yaml, written by kbur init/);
      const doc = parse(written) as { nodes: { name: string; agent: string }[] };
      expect(doc.nodes).to.deep.equal(sandbox.nodes.map((n) => ({ name: n.name, agent: n.agentAddress })));

      const backup = await runKbur(['--config', config, 'backup', '--json']);
      expect(backup.code, backup.stderr).to.equal(0);
      expect((JSON.parse(backup.stdout) as Manifest).phase).to.equal('Completed');

      const again = await runKbur([...args, '--pki', sandbox.kburPki.dir]);
      expect(again.code).to.equal(9);
      expect(again.stderr).to.match(/already exists; kbur init never overwrites/);
      expect(await readFile(config, 'utf8')).to.equal(written);
    });
  });

  describe('kbur-agent --print-config', function () {
    it("prints the effective config with what the agent found in etcd's static pod manifest", async function () {
      const { stdout } = await exec(process.execPath, [AGENT_BIN, '--print-config', '--config', node1().agentConfig]);
      expect(stdout).to.match(/^# kbur-agent .*etcd settings not in the file come from .*etcd\.yaml/);
      const effective = parse(stdout) as { etcd: Record<string, unknown>; stateDir: string; logLevel: string };
      expect(effective.etcd).to.include({ name: 'node-1', dataDir: node1().dataDir });
      expect(effective.etcd.endpoints).to.deep.equal([node1().clientUrl]);
      expect(effective.logLevel).to.equal('info');
    });
  });

  describe('versions', function () {
    it('an agent refuses a caller of another wire contract at the first call, naming both versions', async function () {
      const old = new Metadata();
      old.set(META_WIRE_VERSION, String(WIRE_VERSION - 1));
      old.set(META_KBUR_VERSION, '0.0.9');
      const err = await nodeInfoError(node1().agentAddress, pki('kbur-admin'), old);
      expect(err?.code).to.equal(status.FAILED_PRECONDITION);
      expect(err?.details).to.include(`kbur ${KBUR_VERSION} (wire contract ${WIRE_VERSION})`);
      expect(err?.details).to.include(`kbur 0.0.9 (wire contract ${WIRE_VERSION - 1})`);
      const none = await nodeInfoError(node1().agentAddress, pki('kbur-admin'), new Metadata());
      expect(none?.code).to.equal(status.FAILED_PRECONDITION);
      expect(none?.details).to.include('(wire contract none)');
    });

    it('kbur refuses an agent of another wire contract at the first call, naming both versions: the backup Failed, nothing taken from it', async function () {
      // A stand-in for a newer agent: it answers node info with a newer wire contract in its metadata.
      const server = new Server();
      const getNodeInfo = (call: { sendMetadata(md: Metadata): void }, cb: (e: null, r: GetNodeInfoResponse) => void): void => {
        const md = new Metadata();
        md.set(META_WIRE_VERSION, String(WIRE_VERSION + 1));
        md.set(META_KBUR_VERSION, '9.9.9');
        call.sendMetadata(md);
        cb(null, { node: 'node-1' } as GetNodeInfoResponse);
      };
      server.addService(AgentService, { getNodeInfo } as never);
      const tls = pki('agent-node-1');
      const [ca, cert, key] = await Promise.all([readFile(tls.ca), readFile(tls.cert), readFile(tls.key)]);
      const address = `${node1().ip}:7843`;
      await new Promise<void>((resolve, reject) =>
        server.bindAsync(address, ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], true), (e) =>
          e ? reject(e) : resolve(),
        ),
      );
      try {
        const config = parse(await readFile(sandbox.coordinatorConfig, 'utf8')) as Record<string, unknown>;
        const file = join(root, 'newer-agent.yaml');
        await writeFile(file, stringify({ ...config, nodes: [{ name: 'node-1', agent: address }] }));
        const backup = await runKbur(['--config', file, 'backup']);
        expect(backup.code, backup.stderr + backup.stdout).to.equal(4);
        expect(backup.stdout).to.include(`kbur ${KBUR_VERSION} (wire contract ${WIRE_VERSION})`);
        expect(backup.stdout).to.include(`kbur-agent on node-1 is kbur 9.9.9 (wire contract ${WIRE_VERSION + 1})`);
        // The etcd line gives the same reason, not "not reachable": the agent answered.
        const etcdLine = backup.stdout.split('\n').find((l) => l.includes('no etcd member gave a whole snapshot'));
        expect(etcdLine, backup.stdout).to.include('wire contract');
        expect(etcdLine).not.to.match(/not reachable/);
      } finally {
        server.forceShutdown();
      }
    });

    it('reads, describes and verifies a backup set written in manifest schema 1', async function () {
      const repo = join(root, 'old-sets');
      await cp(join(FIXTURES, 'schema-1'), repo, { recursive: true });
      const file = await configFor(repo);
      const list = await runKbur(['--config', file, '--json', 'list']);
      expect(list.code, list.stderr).to.equal(0);
      const [set] = JSON.parse(list.stdout) as { id: string; phase: string }[];
      expect(set).to.include({ phase: 'Completed' });
      const describe = await runKbur(['--config', file, 'describe', set!.id]);
      expect(describe.code, describe.stderr).to.equal(0);
      const verify = await runKbur(['--config', file, 'verify', set!.id]);
      expect(verify.code, verify.stderr + verify.stdout).to.equal(0);
    });

    it('refuses a backup set of a newer manifest schema, naming the kbur that wrote it', async function () {
      const repo = join(root, 'newer-sets');
      await cp(join(FIXTURES, 'schema-1'), repo, { recursive: true });
      const list = JSON.parse((await runKbur(['--config', await configFor(repo), '--json', 'list'])).stdout) as { id: string }[];
      const setId = list[0]!.id;
      const manifestFile = join(repo, 'sandbox', 'backups', setId, 'manifest.json');
      const manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as Record<string, unknown>;
      await writeFile(manifestFile, JSON.stringify({ ...manifest, schemaVersion: 99, kburVersion: '7.0.0' }));
      const describe = await runKbur(['--config', await configFor(repo), 'describe', setId]);
      expect(describe.code).to.equal(9);
      expect(describe.stderr).to.match(/manifest schema 99 \(written by kbur 7\.0\.0\); this kbur reads schemas up to 1/);
    });

    async function configFor(repo: string): Promise<string> {
      const config = parse(await readFile(sandbox.coordinatorConfig, 'utf8')) as Record<string, unknown>;
      const file = join(root, `config-${repo.split('/').pop()}.yaml`);
      await writeFile(file, stringify({ ...config, repository: { type: 'local', path: repo } }));
      return file;
    }
  });
});

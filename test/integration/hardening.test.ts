// Issue 13: what a client with a valid certificate can do to an agent with crafted requests, and
// the holes a review found (a NUL that killed the agent, file-set links leaving the profile, races
// between restores, a monitor making etcd walk its whole index). One agent on a one-node sandbox.
import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { Metadata, credentials, status, type Client, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { AgentServiceClient, type RestoreStepResponse } from '../../proto/gen/kbur/v1/agent.js';
import type { Manifest } from '../../shared/manifest.js';
import { runKbur } from '../helpers/kbur.js';
import { appendToTar } from '../helpers/tar.js';
import { createSandbox, type KburIdentity, type Sandbox, type SandboxNode } from '../sandbox/cluster.js';

const DEADLINE_MS = 20_000;

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** How a call ended: its status code, details and kbur's code, or OK. */
export interface Outcome {
  code: status;
  details: string;
  kburCode: string | undefined;
}

export function outcomeOf(err: ServiceError | null | undefined): Outcome {
  if (!err) return { code: status.OK, details: '', kburCode: undefined };
  const sent = err.metadata?.get('kbur-code')[0];
  return { code: err.code, details: err.details, kburCode: typeof sent === 'string' ? sent : undefined };
}

describe('hardening: crafted requests and races against one agent', function () {
  this.timeout(180_000);
  let root: string;
  let sandbox: Sandbox | undefined;
  let node: SandboxNode;
  let fileset: string;
  const clients: Client[] = [];

  function sb(): Sandbox {
    if (!sandbox) throw new Error('the sandbox did not start');
    return sandbox;
  }

  async function client(who: KburIdentity): Promise<AgentServiceClient> {
    const ca = await readFile(sb().kburPki.ca);
    const pair = sb().kburPki.cert(who);
    const c = new AgentServiceClient(node.agentAddress, credentials.createSsl(ca, await readFile(pair.key), await readFile(pair.cert)), {
      'grpc.use_local_subchannel_pool': 1,
    });
    clients.push(c);
    return c;
  }

  function deadline(): { deadline: number } {
    return { deadline: Date.now() + DEADLINE_MS };
  }

  function step(c: AgentServiceClient, method: 'stopControlPlane' | 'startEtcd' | 'startControlPlane', restoreId: string) {
    return new Promise<{ outcome: Outcome; res?: RestoreStepResponse }>((resolve) =>
      c[method]({ restoreId }, new Metadata(), deadline(), (err, res) => resolve({ outcome: outcomeOf(err), res })),
    );
  }

  function nodeInfo(c: AgentServiceClient, countKeys: boolean): Promise<Outcome> {
    return new Promise((resolve) => c.getNodeInfo({ countKeys }, new Metadata(), deadline(), (err) => resolve(outcomeOf(err))));
  }

  function runDump(c: AgentServiceClient, profile: string): Promise<Outcome> {
    return new Promise((resolve) => {
      const call = c.runDump({ profile }, deadline());
      let outcome: Outcome | undefined;
      call.on('data', () => undefined);
      call.on('error', (err: ServiceError) => (outcome = outcomeOf(err)));
      call.on('status', () => setImmediate(() => resolve(outcome ?? outcomeOf(null))));
    });
  }

  before(async function () {
    root = await mkdtemp(join(tmpdir(), 'kbur-hardening-test-'));
    sandbox = await createSandbox({ root: join(root, 'sandbox'), nodes: 1 });
    node = sandbox.nodes[0]!;
    fileset = join(root, 'fileset');
    await mkdir(join(fileset, 'app'), { recursive: true });
    await writeFile(join(fileset, 'app', 'data.txt'), 'the data\n');
    await writeFile(join(fileset, 'secret.txt'), 'not for the file set\n', { mode: 0o600 });
    const profiles = [`  app: {type: files, paths: [${join(fileset, 'app')}]}`];
    await writeFile(node.agentConfig, `${await readFile(node.agentConfig, 'utf8')}dumps:\n${profiles.join('\n')}\n`);
    await sandbox.startAgents();
  });

  after(async function () {
    for (const c of clients) c.close();
    await sandbox?.stop();
    await rm(root, { recursive: true, force: true });
  });

  it('answers a profile name with a NUL in it with NOT_FOUND, and keeps running', async function () {
    const operator = await client('kbur-operator');
    const refused = await runDump(operator, 'a\u0000b');
    expect(refused.code, refused.details).to.equal(status.NOT_FOUND);
    expect(refused.details).to.contain('no dump profile');
    expect(await nodeInfo(operator, false)).to.deep.include({ code: status.OK });
  });

  it('lets only the admin role ask node info to count every key', async function () {
    for (const who of ['monitoring', 'kbur-operator'] as const) {
      const asked = await nodeInfo(await client(who), true);
      expect(asked.code, `${who}: ${asked.details}`).to.equal(status.PERMISSION_DENIED);
      expect(asked.details).to.contain('countKeys');
      expect(await nodeInfo(await client(who), false)).to.deep.include({ code: status.OK });
    }
    expect(await nodeInfo(await client('kbur-admin'), true)).to.deep.include({ code: status.OK });
  });

  it('refuses a file-set dump whose archive holds links that leave the profile path, naming the entry', async function () {
    const backup = await runKbur(['--config', await configWithDump(), 'backup', '--json']);
    expect(backup.code, backup.stderr).to.equal(0);
    const manifest = JSON.parse(backup.stdout) as Manifest;
    const artifact = manifest.artifacts.find((a) => a.kind === 'dump')!;
    const dir = join(sb().repoDir, 'sandbox', 'backups', manifest.id);
    const app = relative('/', join(fileset, 'app'));
    const original = gunzipSync(await readFile(join(dir, artifact.path)));

    for (const evil of [
      { path: `${app}/evil`, type: 'symlink' as const, linkpath: '../secret.txt' },
      { path: `${app}/evil`, type: 'hardlink' as const, linkpath: relative('/', join(fileset, 'secret.txt')) },
    ]) {
      // The repository's archive with one entry added, its sha256 and size fixed up in the manifest.
      const tampered = gzipSync(appendToTar(original, [evil]));
      const m = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest;
      const a = m.artifacts.find((x) => x.path === artifact.path)!;
      Object.assign(a, { size: tampered.length, sha256: sha256(tampered) });
      await writeFile(join(dir, 'manifest.json'), JSON.stringify(m, null, 2));
      await writeFile(join(dir, artifact.path), tampered);

      const run = await runKbur([
        '--config',
        sb().coordinatorConfig,
        'restore-dump',
        manifest.id,
        '--node',
        node.name,
        '--profile',
        'app',
        '--yes',
      ]);
      expect(run.code, `${evil.type}: ${run.stdout}${run.stderr}`).to.equal(5);
      expect(run.stderr).to.contain(`${app}/evil`);
      expect(run.stderr).to.match(/leaves the profile's paths|outside the profile's paths/);
      expect(await lstat(join(fileset, 'app', 'evil')).catch(() => undefined), 'the link was not made').to.equal(undefined);
      expect(await readFile(join(fileset, 'secret.txt'), 'utf8')).to.equal('not for the file set\n');
    }
  });

  it('lets exactly one of two restores started together stop the control plane; the other gets FAILED_PRECONDITION', async function () {
    const admin = await client('kbur-admin');
    const ids = ['20261130T120000Z-0001', '20261130T120000Z-0002'];
    const results = await Promise.all(ids.map((id) => step(admin, 'stopControlPlane', id)));
    try {
      const codes = results.map((r) => r.outcome.code);
      expect(
        codes.filter((c) => c === status.OK),
        results.map((r) => r.outcome.details).join(' / '),
      ).to.have.length(1);
      const loser = results.find((r) => r.outcome.code !== status.OK)!;
      expect(loser.outcome.code).to.equal(status.FAILED_PRECONDITION);
      expect(loser.outcome.details).to.match(/restore 20261130T120000Z-000[12] /);
    } finally {
      // The one that stopped it starts it again.
      const winner = ids.find((_, i) => results[i]!.outcome.code === status.OK) ?? ids[0]!;
      for (const method of ['startEtcd', 'startControlPlane'] as const) {
        const r = await step(admin, method, winner);
        expect(r.outcome.code, r.outcome.details).to.equal(status.OK);
      }
    }
    expect((await readdir(node.manifestsDir)).sort()).to.deep.equal([
      'etcd.yaml',
      'kube-apiserver.yaml',
      'kube-controller-manager.yaml',
      'kube-scheduler.yaml',
    ]);
  });

  async function configWithDump(): Promise<string> {
    const file = join(root, 'kbur-dump.yaml');
    await writeFile(file, `${await readFile(sb().coordinatorConfig, 'utf8')}dumps:\n  - {node: ${node.name}, profile: app}\n`);
    return file;
  }
});

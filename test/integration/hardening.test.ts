// Issue 13: what a client with a valid certificate can do to an agent with crafted requests, and
// the holes a review found (a NUL that killed the agent, file-set links leaving the profile, races
// between restores, a monitor making etcd walk its whole index). One agent on a one-node sandbox.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync, gzipSync } from 'node:zlib';
import { Metadata, credentials, status, type Client, type ClientWritableStream, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import fc from 'fast-check';
import {
  AgentServiceClient,
  GetNodeInfoRequest,
  KeepSnapshotRequest,
  PrepareRestoreRequest,
  RestoreDumpRequest,
  RestoreEtcdMemberRequest,
  RestoreStepRequest,
  RunDumpRequest,
  StageSnapshotRequest,
  type RestoreStepResponse,
} from '../../proto/gen/kbur/v1/agent.js';
import type { Manifest } from '../../shared/manifest.js';
import { runKbur } from '../helpers/kbur.js';
import { appendToTar, paxEntry, tarArchive } from '../helpers/tar.js';
import { createSandbox, type KburIdentity, type Sandbox, type SandboxNode } from '../sandbox/cluster.js';
import { wireCheckInterceptor } from '../../shared/wire.js';

const DEADLINE_MS = 20_000;
const exec = promisify(execFile);

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
      // Our versions on every call, as kbur sends them (the agent refuses a caller of another wire contract).
      interceptors: [wireCheckInterceptor(node.name)],
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

  /** A client-stream upload: its header (restoreId and the rest), with the size and sha256 of `bytes`, then the bytes. */
  function uploadTo<H>(
    open: (
      md: Metadata,
      opts: { deadline: number },
      cb: (err: ServiceError | null) => void,
    ) => ClientWritableStream<{ kind?: { $case: 'header'; value: H } | { $case: 'data'; value: Buffer } }>,
    header: Omit<H, 'size' | 'sha256'>,
    bytes: Buffer,
  ): Promise<Outcome> {
    return new Promise((resolve) => {
      const call = open(new Metadata(), deadline(), (err) => resolve(outcomeOf(err)));
      call.write({ kind: { $case: 'header', value: { ...header, size: bytes.length, sha256: sha256(bytes) } as H } });
      call.write({ kind: { $case: 'data', value: bytes } });
      call.end();
    });
  }

  function nodeInfo(c: AgentServiceClient, countKeys: boolean): Promise<Outcome> {
    return new Promise((resolve) =>
      c.getNodeInfo({ countKeys, certificates: false }, new Metadata(), deadline(), (err) => resolve(outcomeOf(err))),
    );
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
      expect(run.stderr).to.match(/leaves the profile's paths|not a file earlier in the archive/);
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

  // Uploads that change the node, each sent by another restore while StopControlPlane runs: each
  // would be whole and valid on its own, and would leave `left` behind without the restore lock.
  const races: { what: string; left: () => string; send: (admin: AgentServiceClient, restoreId: string) => Promise<Outcome> }[] = [
    {
      what: 'kubernetes dir upload',
      left: () => join(node.kubernetesDir, 'kbur-race.txt'),
      send: (admin, restoreId) => {
        const tar = tarArchive([{ path: 'kbur-race.txt', body: 'from another restore\n' }]);
        return uploadTo(admin.restoreKubernetesDir.bind(admin), { restoreId, localCopy: '', readdress: [] }, tar);
      },
    },
    {
      what: 'dump restore',
      left: () => join(fileset, 'app', 'kbur-race.txt'),
      send: (admin, restoreId) => {
        const tar = gzipSync(tarArchive([{ path: `${relative('/', join(fileset, 'app'))}/kbur-race.txt`, body: 'from a dump restore\n' }]));
        return uploadTo(admin.restoreDump.bind(admin), { restoreId, profile: 'app', part: 'files', compression: 'gzip' }, tar);
      },
    },
  ];
  races.forEach(({ what, left, send }, i) => {
    it(`refuses another restore's ${what} while a restore step runs, and changes nothing`, async function () {
      const admin = await client('kbur-admin');
      const holder = `20261130T120000Z-00${(2 * i + 3).toString().padStart(2, '0')}`;
      const [stopped, uploaded] = await Promise.all([step(admin, 'stopControlPlane', holder), send(admin, `20261130T120000Z-009${i}`)]);
      try {
        expect(stopped.outcome.code, stopped.outcome.details).to.equal(status.OK);
        expect(uploaded.code, uploaded.details).to.equal(status.FAILED_PRECONDITION);
        expect(uploaded.details).to.contain(`restore ${holder} is running StopControlPlane`);
        expect(await lstat(left()).catch(() => undefined)).to.equal(undefined);
      } finally {
        for (const method of ['startEtcd', 'startControlPlane'] as const) {
          const r = await step(admin, method, holder);
          expect(r.outcome.code, r.outcome.details).to.equal(status.OK);
        }
      }
    });
  });

  it('changes nothing for a rollback of a restore this node never saw', async function () {
    const admin = await client('kbur-admin');
    const pid = sb().kubelet.pid(node.name, 'etcd');
    const res = await new Promise<{ outcome: Outcome; res?: RestoreStepResponse }>((resolve) =>
      admin.rollbackRestore({ restoreId: '20261130T160000Z-0bad' }, new Metadata(), deadline(), (err, r) =>
        resolve({ outcome: outcomeOf(err), res: r }),
      ),
    );
    expect(res.outcome.code, res.outcome.details).to.equal(status.OK);
    expect(res.res?.alreadyDone).to.equal(true);
    expect(res.res?.done).to.deep.equal([]);
    expect(sb().kubelet.pid(node.name, 'etcd'), 'etcd was not restarted').to.equal(pid);
  });

  describe('abuse campaign: crafted requests from clients with valid certificates', function () {
    type Expect = status | status[];
    interface Case {
      group: string;
      what: string;
      expect: Expect;
      call: () => Promise<Outcome>;
    }
    const MARK = `kbur-abuse-${process.pid}`;
    const tally = new Map<string, { tried: number; refused: number }>();
    let untouched: string[];

    /** What lies in the node's folders (but its state dir and etcd's own files) and in the file set. */
    async function listing(): Promise<string[]> {
      const out: string[] = [];
      for (const base of [node.dir, fileset]) {
        for (const e of await readdir(base, { recursive: true, withFileTypes: true })) {
          const rel = relative(base, join(e.parentPath, e.name));
          if (base === node.dir && (rel.startsWith('state') || rel.startsWith('etcd-data/'))) continue;
          out.push(`${base}:${rel}:${e.isSymbolicLink() ? 'l' : e.isDirectory() ? 'd' : 'f'}`);
        }
      }
      return out.sort();
    }

    // Any: the generated client's methods differ in shape by kind; each helper below calls one kind.
    type Dynamic = Record<string, (...args: unknown[]) => unknown>;

    /** Every field a crafted request leaves out gets its default, as a real client's would. */
    const COMPLETE: Record<string, { fromPartial(o: object): object }> = {
      getNodeInfo: GetNodeInfoRequest,
      prepareRestore: PrepareRestoreRequest,
      restoreEtcdMember: RestoreEtcdMemberRequest,
      keepSnapshot: KeepSnapshotRequest,
      stageSnapshot: StageSnapshotRequest,
      restoreKubernetesDir: StageSnapshotRequest,
      restoreDump: RestoreDumpRequest,
      runDump: RunDumpRequest,
    };
    const complete = (method: string, m: object): object => COMPLETE[method]?.fromPartial(m) ?? RestoreStepRequest.fromPartial(m);

    function unary(c: AgentServiceClient, method: string, req: object): Promise<Outcome> {
      return new Promise((resolve) =>
        (c as unknown as Dynamic)[method]!.call(c, complete(method, req), new Metadata(), deadline(), (err: ServiceError | null) =>
          resolve(outcomeOf(err)),
        ),
      );
    }

    function serverStream(c: AgentServiceClient, method: string, req: object): Promise<Outcome> {
      return new Promise((resolve) => {
        const call = (c as unknown as Dynamic)[method]!.call(c, complete(method, req), deadline()) as NodeJS.EventEmitter & {
          cancel(): void;
        };
        let outcome: Outcome | undefined;
        call.on('data', () => undefined);
        call.on('error', (err: ServiceError) => (outcome = outcomeOf(err)));
        call.on('status', () => setImmediate(() => resolve(outcome ?? outcomeOf(null))));
      });
    }

    type Upload = { kind: { $case: 'header'; value: object } | { $case: 'data'; value: Buffer } };
    function upload(c: AgentServiceClient, method: string, messages: Upload[]): Promise<Outcome> {
      return new Promise((resolve) => {
        const call = (c as unknown as Dynamic)[method]!.call(c, new Metadata(), deadline(), (err: ServiceError | null) =>
          resolve(outcomeOf(err)),
        ) as { write(m: Upload): boolean; end(): void; on(e: 'error', f: () => void): void };
        call.on('error', () => undefined);
        for (const m of messages) call.write(complete(method, m) as Upload);
        call.end();
      });
    }

    const header = (value: object): Upload => ({ kind: { $case: 'header', value } });
    const data = (value: Buffer): Upload => ({ kind: { $case: 'data', value } });
    /** A header that announces exactly `bytes`, then the bytes. */
    const whole = (h: object, bytes: Buffer): Upload[] => [header({ ...h, size: bytes.length, sha256: sha256(bytes) }), data(bytes)];

    let nextId = 0;
    /** A fresh, well-formed restore id: each crafted upload gets its own folder in the state dir. */
    const freshId = (): string => `20261130T140000Z-${(nextId++).toString(16).padStart(4, '0')}`;

    const METHODS: [string, 'unary' | 'server' | 'client', string, object][] = [
      ['GetNodeInfo', 'unary', 'getNodeInfo', { countKeys: false }],
      ['SnapshotEtcd', 'server', 'snapshotEtcd', {}],
      ['ArchiveKubernetes', 'server', 'archiveKubernetes', {}],
      ['KeepSnapshot', 'client', 'keepSnapshot', {}],
      ['RunDump', 'server', 'runDump', { profile: 'app' }],
      ['RestoreDump', 'client', 'restoreDump', {}],
      ['PrepareRestore', 'unary', 'prepareRestore', { restoreId: '20261130T150000Z-0001', snapshotSize: 1 }],
      ['StageSnapshot', 'client', 'stageSnapshot', {}],
      ['VerifyStagedSnapshot', 'unary', 'verifyStagedSnapshot', { restoreId: '20261130T150000Z-0001' }],
      ['StopControlPlane', 'unary', 'stopControlPlane', { restoreId: '20261130T150000Z-0001' }],
      ['RestoreEtcdMember', 'unary', 'restoreEtcdMember', { restoreId: '20261130T150000Z-0001' }],
      ['RestoreKubernetesDir', 'client', 'restoreKubernetesDir', {}],
      ['StartEtcd', 'unary', 'startEtcd', { restoreId: '20261130T150000Z-0001' }],
      ['StartControlPlane', 'unary', 'startControlPlane', { restoreId: '20261130T150000Z-0001' }],
      ['RollbackRestore', 'unary', 'rollbackRestore', { restoreId: '20261130T150000Z-0001' }],
    ];
    const ROLES: Record<string, string[]> = {
      monitoring: ['GetNodeInfo'],
      'kbur-operator': ['GetNodeInfo', 'SnapshotEtcd', 'ArchiveKubernetes', 'KeepSnapshot', 'RunDump'],
      stranger: [],
    };

    /** Raw bytes as a method's message, past the generated encoder: what a client that speaks no protobuf sends. */
    function raw(c: AgentServiceClient, method: string, kind: 'unary' | 'server' | 'client', bytes: Buffer): Promise<Outcome> {
      const path = `/kbur.v1.AgentService/${method}`;
      const same = (b: Buffer): Buffer => b;
      return new Promise((resolve) => {
        const done = (err: ServiceError | null): void => resolve(outcomeOf(err));
        if (kind === 'unary') c.makeUnaryRequest(path, same, same, bytes, new Metadata(), deadline(), done);
        else if (kind === 'client') {
          const call = c.makeClientStreamRequest(path, same, same, new Metadata(), deadline(), done);
          call.on('error', () => undefined);
          call.write(bytes);
          call.end();
        } else {
          const call = c.makeServerStreamRequest(path, same, same, bytes, new Metadata(), deadline());
          let outcome: Outcome | undefined;
          call.on('data', () => undefined);
          call.on('error', (err: ServiceError) => (outcome = outcomeOf(err)));
          call.on('status', () => setImmediate(() => resolve(outcome ?? outcomeOf(null))));
        }
      });
    }

    function cases(c: Record<KburIdentity, AgentServiceClient>): Case[] {
      const admin = c['kbur-admin'];
      const list: Case[] = [];
      const add = (group: string, what: string, expect: Expect, call: () => Promise<Outcome>): void => {
        list.push({ group, what, expect, call });
      };

      for (const [who, allowed] of Object.entries(ROLES)) {
        for (const [method, kind, name, req] of METHODS) {
          if (allowed.includes(method)) continue;
          const client = c[who as KburIdentity];
          add('wrong role for the method', `${who} calls ${method}`, status.PERMISSION_DENIED, () =>
            kind === 'unary' ? unary(client, name, req) : kind === 'server' ? serverStream(client, name, req) : upload(client, name, []),
          );
        }
      }

      const badIds = [
        'a/b',
        '../../etc',
        '..',
        '20261130T150000Z-0001/../../x',
        'x\u0000y',
        '2026\u0000',
        'A'.repeat(100_000),
        '',
        '-rf',
        '20261130T150000Z-0001\n',
      ];
      for (const id of badIds) {
        const shown = JSON.stringify(id.slice(0, 30));
        for (const name of ['verifyStagedSnapshot', 'stopControlPlane', 'startEtcd', 'rollbackRestore', 'prepareRestore'])
          add('bad restore or backup id', `${name} ${shown}`, status.INVALID_ARGUMENT, () => unary(admin, name, { restoreId: id }));
        add('bad restore or backup id', `StageSnapshot ${shown}`, status.INVALID_ARGUMENT, () =>
          upload(admin, 'stageSnapshot', whole({ restoreId: id }, Buffer.from('x'))),
        );
        add('bad restore or backup id', `KeepSnapshot ${shown}`, status.INVALID_ARGUMENT, () =>
          upload(admin, 'keepSnapshot', whole({ backupId: id }, Buffer.from('x'))),
        );
        add('bad restore or backup id', `RestoreDump ${shown}`, status.INVALID_ARGUMENT, () =>
          upload(admin, 'restoreDump', whole({ restoreId: id, profile: 'app', part: 'files', compression: 'none' }, Buffer.from('x'))),
        );
      }
      add('bad restore or backup id', 'StageSnapshot from a local copy named ../../../etc/passwd', status.INVALID_ARGUMENT, () =>
        upload(admin, 'stageSnapshot', [
          header({ restoreId: freshId(), size: 1, sha256: 'a'.repeat(64), localCopy: '../../../etc/passwd' }),
        ]),
      );

      for (const profile of [
        'nope',
        '',
        '../app',
        'a\u0000b',
        '__proto__',
        'constructor',
        'toString',
        'app/../app',
        'p'.repeat(200_000),
        '-x',
        'app\u202e',
      ]) {
        const shown = JSON.stringify(profile.slice(0, 30));
        add('unknown profile or part', `RunDump ${shown}`, status.NOT_FOUND, () => runDump(c['kbur-operator'], profile));
        add('unknown profile or part', `RestoreDump profile ${shown}`, status.NOT_FOUND, () =>
          upload(admin, 'restoreDump', whole({ restoreId: freshId(), profile, part: 'files', compression: 'none' }, Buffer.from('x'))),
        );
      }
      for (const part of ['-x', '../files', 'a/b', 'files\u0000', '', 'nope'])
        add('unknown profile or part', `RestoreDump part ${JSON.stringify(part)}`, [status.INVALID_ARGUMENT], () =>
          upload(admin, 'restoreDump', whole({ restoreId: freshId(), profile: 'app', part, compression: 'none' }, Buffer.from('x'))),
        );

      // The same crafted entries under the file set's path (its archive's root is /) and in a kubernetes dir archive.
      const app = relative('/', join(fileset, 'app'));
      const tars = (at: string): [string, Buffer][] => [
        ['an absolute path', tarArchive([{ path: `/tmp/${MARK}-abs`, body: 'x' }])],
        ['a path with ..', tarArchive([{ path: `${at}/../../../../../../../../tmp/${MARK}-dotdot`, body: 'x' }])],
        ['a .. that stays inside', tarArchive([{ path: `${at}/x/../${MARK}-dotdot2`, body: 'x' }])],
        ['a symlink out', tarArchive([{ path: `${at}/${MARK}-sym`, type: 'symlink', linkpath: '../../../../../../../../etc/shadow' }])],
        ['an absolute symlink', tarArchive([{ path: `${at}/${MARK}-abssym`, type: 'symlink', linkpath: '/etc/shadow' }])],
        ['a hard link out', tarArchive([{ path: `${at}/${MARK}-hard`, type: 'hardlink', linkpath: '../../../../../../../../etc/shadow' }])],
        [
          'a hard link to a file not in the archive',
          tarArchive([{ path: `${at}/${MARK}-hard2`, type: 'hardlink', linkpath: 'etc/shadow' }]),
        ],
        ['a character device', tarArchive([{ path: `${at}/${MARK}-null`, type: 'chardev' }])],
        ['a block device', tarArchive([{ path: `${at}/${MARK}-sda`, type: 'blockdev' }])],
        ['a fifo', tarArchive([{ path: `${at}/${MARK}-fifo`, type: 'fifo' }])],
        [
          'a path through its own symlink',
          tarArchive([
            { path: `${at}/x`, type: 'symlink', linkpath: '.' },
            { path: `${at}/x/${MARK}-through`, body: 'x' },
          ]),
        ],
        [
          'a symlink through its own symlink',
          tarArchive([
            { path: `${at}/b`, type: 'symlink', linkpath: '.' },
            { path: `${at}/${MARK}-chain`, type: 'symlink', linkpath: 'b/../x' },
          ]),
        ],
        [
          'a 100 KiB path (pax header)',
          tarArchive([paxEntry({ path: `${at}/${'a/'.repeat(50 << 10)}${MARK}` }), { path: `${at}/ok`, body: 'x' }]),
        ],
        ['a size no stream holds', tarArchive([{ path: `${at}/${MARK}-huge`, claimedSize: 8 * 1024 ** 3, body: 'x' }])],
        ['a truncated archive', tarArchive([{ path: `${at}/${MARK}-cut`, body: 'y'.repeat(5000) }]).subarray(0, 1500)],
        ['not a tar at all', Buffer.from(`${MARK} `.repeat(400))],
      ];
      for (const [what, tar] of tars(app)) {
        add('crafted tar stream', `file-set dump with ${what}`, status.DATA_LOSS, () =>
          upload(admin, 'restoreDump', whole({ restoreId: freshId(), profile: 'app', part: 'files', compression: 'none' }, tar)),
        );
      }
      for (const [what, tar] of tars('pki')) {
        add('crafted tar stream', `kubernetes dir with ${what}`, status.DATA_LOSS, () =>
          upload(admin, 'restoreKubernetesDir', whole({ restoreId: freshId() }, tar)),
        );
      }

      const bytes = Buffer.from(`${MARK} some bytes\n`.repeat(100));
      const uploads: [string, Expect, (h: object) => Upload[]][] = [
        ['a truncated upload', status.DATA_LOSS, (h) => [header({ ...h, size: bytes.length * 2, sha256: sha256(bytes) }), data(bytes)]],
        ['an oversized upload', status.DATA_LOSS, (h) => [header({ ...h, size: 10, sha256: sha256(bytes) }), data(bytes)]],
        ['a wrong sha256', status.DATA_LOSS, (h) => [header({ ...h, size: bytes.length, sha256: 'f'.repeat(64) }), data(bytes)]],
        ['no header', status.INVALID_ARGUMENT, () => [data(bytes)]],
        ['nothing at all', status.INVALID_ARGUMENT, () => []],
        ['two headers', status.INVALID_ARGUMENT, (h) => [...whole(h, bytes).slice(0, 1), header({ ...h, size: 1 })]],
        ['size 0', status.INVALID_ARGUMENT, (h) => [header({ ...h, size: 0, sha256: sha256(Buffer.alloc(0)) })]],
        ['a negative size', status.INVALID_ARGUMENT, (h) => [header({ ...h, size: -5, sha256: sha256(bytes) }), data(bytes)]],
        ['a sha256 that is not hex', status.INVALID_ARGUMENT, (h) => [header({ ...h, size: bytes.length, sha256: '../x' }), data(bytes)]],
        ['a petabyte announced', status.FAILED_PRECONDITION, (h) => [header({ ...h, size: 2 ** 50, sha256: sha256(bytes) }), data(bytes)]],
      ];
      for (const [what, expect, messages] of uploads) {
        add('truncated or oversized upload', `StageSnapshot: ${what}`, expect, () =>
          upload(admin, 'stageSnapshot', messages({ restoreId: freshId() })),
        );
        add('truncated or oversized upload', `RestoreDump: ${what}`, expect, () =>
          upload(admin, 'restoreDump', messages({ restoreId: freshId(), profile: 'app', part: 'files', compression: 'none' })),
        );
      }
      add('truncated or oversized upload', 'StageSnapshot: bytes that are not an etcd snapshot', status.DATA_LOSS, () =>
        upload(admin, 'stageSnapshot', whole({ restoreId: freshId() }, bytes)),
      );
      add('truncated or oversized upload', 'KeepSnapshot: bytes that are not an etcd snapshot', status.DATA_LOSS, () =>
        upload(admin, 'keepSnapshot', whole({ backupId: '20261130T150000Z-0002' }, bytes)),
      );
      // What etcdutl would get as arguments: refused before the tool runs, whether or not anything is staged.
      const member = {
        name: 'node-1',
        initialCluster: 'node-1=https://10.0.0.11:2380',
        initialClusterToken: 'kbur-x',
        initialAdvertisePeerUrls: ['https://10.0.0.11:2380'],
      };
      const craftedMembers: [string, object][] = [
        [
          'option-like names',
          { name: '--data-dir=/etc', initialCluster: '-x', initialClusterToken: '\u0000', initialAdvertisePeerUrls: ['--force'] },
        ],
        ['a name that is an option', { name: '--data-dir=/etc', initialCluster: '--data-dir=/etc=https://10.0.0.11:2380' }],
        ['a token with a newline', { initialClusterToken: 'kbur\n--force-new-cluster' }],
        ['an empty token', { initialClusterToken: '' }],
        [
          'a peer URL with a path',
          { initialCluster: 'node-1=https://10.0.0.11:2380/x', initialAdvertisePeerUrls: ['https://10.0.0.11:2380/x'] },
        ],
        ['a file: peer URL', { initialCluster: 'node-1=file:///etc/passwd', initialAdvertisePeerUrls: ['file:///etc/passwd'] }],
        ['no peer URL', { initialAdvertisePeerUrls: [] }],
        ['an initial cluster without the member', { initialCluster: 'node-2=https://10.0.0.12:2380' }],
        ['an initial cluster entry without =', { initialCluster: 'node-1=https://10.0.0.11:2380,--force-new-cluster' }],
        ['a name of 100,000 bytes', { name: 'n'.repeat(100_000) }],
      ];
      for (const [what, fields] of craftedMembers)
        add('crafted etcd membership', `RestoreEtcdMember with ${what}`, status.INVALID_ARGUMENT, () =>
          unary(admin, 'restoreEtcdMember', { restoreId: freshId(), ...member, ...fields }),
        );
      const garbage: [string, Buffer][] = [
        ['0xff bytes', Buffer.alloc(64, 0xff)],
        ['a length that runs past the message', Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f, 0x41])],
        ['a truncated varint', Buffer.from([0x10, 0x80, 0x80])],
        ['a field of a reserved wire type', Buffer.from([0x0f, 0x00])],
      ];
      for (const [what, bytes] of garbage) {
        for (const [method, kind] of [
          ['PrepareRestore', 'unary'],
          ['RunDump', 'server'],
          ['StageSnapshot', 'client'],
        ] as const) {
          add('malformed protobuf', `${method}: ${what}`, [status.INTERNAL, status.INVALID_ARGUMENT], () =>
            raw(method === 'RunDump' ? c['kbur-operator'] : admin, method, kind, bytes),
          );
        }
      }
      return list;
    }

    before(async function () {
      untouched = await listing();
    });

    it('refuses every crafted request with a clear status, keeps answering, and writes nothing outside its state dir', async function () {
      const c = Object.fromEntries(
        await Promise.all(
          (['kbur-admin', 'kbur-operator', 'monitoring', 'stranger'] as const).map(async (who) => [who, await client(who)]),
        ),
      ) as Record<KburIdentity, AgentServiceClient>;
      const all = cases(c);
      const wrong: string[] = [];
      for (const k of all) {
        const got = await k.call();
        const expected = ([] as status[]).concat(k.expect);
        const t = tally.get(k.group) ?? { tried: 0, refused: 0 };
        t.tried++;
        // A message grpc-js cannot decode is refused by grpc-js itself, before kbur sees it: no kbur code.
        if (expected.includes(got.code) && got.details.length > 0 && (got.kburCode || k.group === 'malformed protobuf')) t.refused++;
        else
          wrong.push(
            `${k.what}: expected ${expected.map((e) => status[e]).join('|')}, got ${status[got.code]} ${got.details.slice(0, 200)}`,
          );
        tally.set(k.group, t);
        const alive = await nodeInfo(c['kbur-admin'], false);
        if (alive.code !== status.OK) throw new Error(`the agent stopped answering after "${k.what}": ${alive.details}`);
      }
      expect(wrong, wrong.join('\n')).to.deep.equal([]);
      expect(all.length).to.be.at.least(50);
      expect(await listing()).to.deep.equal(untouched);
      const escaped = await findMarked(MARK);
      expect(escaped, 'files named after the crafted entries').to.deep.equal([]);
    });

    it('refuses any id that is not a restore id, on every restore step (property)', async function () {
      const admin = await client('kbur-admin');
      let runs = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.string({ unit: 'binary', maxLength: 80 }).filter((id) => !/^\d{8}T\d{6}Z-[0-9a-f]{4}$/.test(id)),
          fc.constantFrom(
            'verifyStagedSnapshot',
            'stopControlPlane',
            'startEtcd',
            'startControlPlane',
            'rollbackRestore',
            'prepareRestore',
          ),
          async (id, method) => {
            runs++;
            const got = await unary(admin, method, { restoreId: id });
            expect(got.code, `${method} ${JSON.stringify(id)}: ${got.details}`).to.equal(status.INVALID_ARGUMENT);
          },
        ),
        { numRuns: 150 },
      );
      tally.set('restore ids (property, fast-check)', { tried: runs, refused: runs });
      expect(await nodeInfo(admin, false)).to.deep.include({ code: status.OK });
    });

    it('refuses any profile the node does not define (property)', async function () {
      const operator = await client('kbur-operator');
      let runs = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.string({ unit: 'binary', maxLength: 80 }).filter((p) => p !== 'app'),
          async (profile) => {
            runs++;
            const got = await runDump(operator, profile);
            expect(got.code, `${JSON.stringify(profile)}: ${got.details}`).to.equal(status.NOT_FOUND);
          },
        ),
        { numRuns: 150 },
      );
      tally.set('profile names (property, fast-check)', { tried: runs, refused: runs });
      expect(await nodeInfo(operator, false)).to.deep.include({ code: status.OK });
      expect(await listing()).to.deep.equal(untouched);
    });

    after(function () {
      const rows = [...tally.entries()].map(([group, t]) => `| ${group} | ${t.tried} | ${t.refused} |`);
      console.log(['| bad input | tried | refused |', '| --- | ---: | ---: |', ...rows].join('\n'));
    });
  });

  /** Files named with the campaign's mark where a crafted entry could have landed (find's errors on vanishing files are ignored). */
  async function findMarked(mark: string): Promise<string[]> {
    const { stdout } = await exec('find', ['/tmp', '/etc', '/var/lib', '/root', root, '-xdev', '-name', `*${mark}*`]).catch(
      (err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }),
    );
    return stdout.split('\n').filter((f) => f && !f.startsWith(node.stateDir));
  }

  async function configWithDump(): Promise<string> {
    const file = join(root, 'kbur-dump.yaml');
    await writeFile(file, `${await readFile(sb().coordinatorConfig, 'utf8')}dumps:\n  - {node: ${node.name}, profile: app}\n`);
    return file;
  }
});

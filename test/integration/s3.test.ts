import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { Etcd3 } from 'etcd3';
import { parse, stringify } from 'yaml';
import type { Manifest } from '../../shared/manifest.js';
import { createSandbox, type Sandbox } from '../sandbox/cluster.js';
import { s3Repository, startS3Server, type S3Server } from '../sandbox/s3.js';
import { clientAfterRestore, etcdClient, putBulk } from '../helpers/etcd.js';
import { runKbur, spawnKbur, type KburRun } from '../helpers/kbur.js';

const exec = promisify(execFile);
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('kbur with an S3 repository (a real S3-compatible server on loopback)', function () {
  this.timeout(240_000);
  let root: string;
  let sandbox: Sandbox;
  let s3: S3Server;
  let etcd: Etcd3;
  let config: string;
  /** Everything kbur printed in this suite, to look for the credentials in. */
  const printed: string[] = [];
  const blob = Buffer.from('application state, version 1\n'.repeat(1000));

  /** A kbur.yaml like the sandbox's with `repository` (and anything else) replaced. */
  async function configWith(name: string, changes: Record<string, unknown>): Promise<string> {
    const file = join(root, `${name}.yaml`);
    const base = parse(await readFile(sandbox.coordinatorConfig, 'utf8')) as Record<string, unknown>;
    await writeFile(file, stringify({ ...base, ...changes }), { mode: 0o600 });
    return file;
  }

  async function kburWith(file: string, ...args: string[]): Promise<KburRun> {
    const run = await runKbur(['--config', file, ...args], { AWS_EC2_METADATA_DISABLED: 'true' });
    printed.push(run.stdout, run.stderr);
    return run;
  }
  const kbur = (...args: string[]): Promise<KburRun> => kburWith(config, ...args);

  async function backup(): Promise<Manifest & { nodeCopies?: { node: string; ok: boolean; detail: string }[] }> {
    const run = await kbur('backup', '--json');
    expect(run.code, run.stdout + run.stderr).to.equal(0);
    return JSON.parse(run.stdout) as Manifest;
  }

  /** Two backups started at once: one runs, the other is refused (11) naming the holder. What both logged. */
  async function twoBackupsTogether(file: string): Promise<string> {
    const env = { AWS_EC2_METADATA_DISABLED: 'true', KBUR_LOG_LEVEL: 'info' };
    const [a, b] = await Promise.all([
      runKbur(['--config', file, 'backup', '--json'], env),
      runKbur(['--config', file, 'backup', '--json'], env),
    ]);
    printed.push(a.stdout, a.stderr, b.stdout, b.stderr);
    expect([a.code, b.code].sort(), a.stderr + b.stderr).to.deep.equal([0, 11]);
    expect((a.code === 11 ? a : b).stderr).to.match(/the repository of cluster sandbox is locked by backup on host \S+, pid \d+/);
    return a.stderr + b.stderr;
  }

  const objectKey = (id: string, path: string): string => `kbur/sandbox/backups/${id}/${path}`;
  async function object(key: string): Promise<Buffer | undefined> {
    const found = (await s3.objects()).find((o) => o.key === key);
    return found ? readFile(found.file) : undefined;
  }

  before(async function () {
    root = await mkdtemp(join(tmpdir(), 'kbur-s3-test-'));
    sandbox = await createSandbox({ root });
    s3 = await startS3Server({ dir: join(root, 's3') });
    await writeFile(join(root, 'app.bin'), blob);
    const node1 = sandbox.nodes[0]!;
    await writeFile(
      node1.agentConfig,
      `${await readFile(node1.agentConfig, 'utf8')}dumps:\n  blob: {type: command, dump: [/bin/cat, ${join(root, 'app.bin')}], restore: [/bin/sh, -c, 'cat > ${join(root, 'app.bin')}']}\n`,
    );
    await sandbox.startAgents();
    etcd = await etcdClient(sandbox);
    // A snapshot of several multipart parts (8 MiB each).
    await putBulk(etcd, '/bulk/', 24);
    config = await configWith('s3', {
      repository: s3Repository(s3),
      backup: { copySnapshotToNodes: true },
      dumps: [{ node: 'node-1', profile: 'blob' }],
    });
  });

  after(async function () {
    etcd?.close();
    await sandbox?.stop();
    await s3?.stop();
    await rm(root, { recursive: true, force: true });
  });

  it('backs up into the bucket with the local layout, the manifest last, and copies the snapshot to every node', async function () {
    const m = await backup();
    expect(m.phase).to.equal('Completed');
    const keys = (await s3.objects()).map((o) => o.key).filter((k) => k.startsWith(`kbur/sandbox/backups/${m.id}/`));
    expect(m.artifacts.map((a) => a.kind).sort()).to.deep.equal([
      'dump',
      'etcd-snapshot',
      'kubernetes-dir',
      'kubernetes-dir',
      'kubernetes-dir',
    ]);
    expect(keys.sort()).to.deep.equal([...m.artifacts.map((a) => a.path), 'manifest.json'].map((p) => objectKey(m.id, p)).sort());
    const snapshot = m.artifacts.find((a) => a.kind === 'etcd-snapshot')!;
    expect(snapshot.size).to.be.greaterThan(16 << 20);
    const stored = (await object(objectKey(m.id, 'etcd/snapshot.db')))!;
    expect([stored.length, sha256(stored)]).to.deep.equal([snapshot.size, snapshot.sha256]);
    const manifest = JSON.parse((await object(objectKey(m.id, 'manifest.json')))!.toString()) as Manifest;
    expect([manifest.id, manifest.phase, manifest.artifacts]).to.deep.equal([m.id, m.phase, m.artifacts]);

    // The server's request log, in order: nothing of this backup is written after its manifest.
    const writes = s3
      .log()
      .split('\n')
      .filter((l) => l.includes('"incoming request"') && /"method":"(PUT|POST)"/.test(l) && l.includes(`/backups/${m.id}/`));
    expect(writes.at(-1)).to.contain(`/backups/${m.id}/manifest.json`);
    expect(
      writes.some((l) => /partNumber=3/.test(l)),
      'the snapshot went up in parts',
    ).to.equal(true);
    expect(await s3.pendingMultipartUploads()).to.deep.equal([]);

    expect(m.nodeCopies?.map((c) => [c.node, c.ok])).to.deep.equal(sandbox.nodes.map((n) => [n.name, true]));
    for (const node of sandbox.nodes) {
      expect(sha256(await readFile(join(node.stateDir, 'snapshots', `${m.id}.db`))), node.name).to.equal(snapshot.sha256);
    }
  });

  it('lists, describes and verifies the backups in the bucket', async function () {
    const m = await backup();
    const list = await kbur('list', '--json');
    expect(list.code, list.stderr).to.equal(0);
    const rows = JSON.parse(list.stdout) as { id: string; phase: string }[];
    expect(rows.find((r) => r.id === m.id)?.phase).to.equal('Completed');
    expect((await kbur('list')).stdout).to.match(new RegExp(`${m.id}\\s+Completed`));

    const describe = await kbur('describe', m.id);
    expect(describe.code, describe.stderr).to.equal(0);
    expect(describe.stdout).to.contain('etcd/snapshot.db');

    const verify = await kbur('verify', m.id);
    expect(verify.code, verify.stdout + verify.stderr).to.equal(0);
    expect(verify.stdout).to.contain('every artifact matches its manifest');
    const recorded = JSON.parse((await object(objectKey(m.id, 'verify.json')))!.toString()) as { ok: boolean };
    expect(recorded.ok).to.equal(true);

    const deep = await kbur('verify', '--deep', m.id);
    expect(deep.code, deep.stdout + deep.stderr).to.equal(0);

    const missing = await kbur('describe', '20200101T000000Z-0000');
    expect([missing.code, missing.stderr]).to.satisfy(
      ([c, e]: [number, string]) => c === 6 && e.includes('no backup 20200101T000000Z-0000'),
    );
  });

  it('verify finds one flipped byte in an object of the bucket, and restore refuses that set before anything stops', async function () {
    const m = await backup();
    const stored = (await s3.objects()).find((o) => o.key === objectKey(m.id, 'etcd/snapshot.db'))!;
    const bytes = await readFile(stored.file);
    bytes[bytes.length >> 1]! ^= 0xff;
    await writeFile(stored.file, bytes);
    await s3.restart(); // the server rereads what it stores from its files
    for (const node of sandbox.nodes) await rm(join(node.stateDir, 'snapshots', `${m.id}.db`), { force: true });

    const verify = await kbur('verify', m.id);
    expect(verify.code, verify.stdout + verify.stderr).to.equal(5);
    expect(verify.stdout).to.match(/MISMATCH etcd\/snapshot\.db: .*integrity hash mismatch|MISMATCH etcd\/snapshot\.db: sha256/);
    const restore = await kbur('restore', m.id, '--yes');
    expect(restore.code, restore.stdout + restore.stderr).to.equal(9);
    expect(sandbox.nodes.every((n) => sandbox.kubelet.running(n.name, 'etcd'))).to.equal(true);
  });

  it('restores every etcd member from the S3 set and restores a dump from it', async function () {
    await etcd.put('/registry/s3test/kept').value('before');
    const m = await backup();
    await etcd.delete().key('/registry/s3test/kept');
    await writeFile(join(root, 'app.bin'), 'changed');

    // No copies on the nodes this time: every node gets the snapshot streamed from the bucket.
    for (const node of sandbox.nodes) await rm(join(node.stateDir, 'snapshots', `${m.id}.db`), { force: true });
    const restore = await kbur('restore', m.id, '--yes');
    expect(restore.code, restore.stdout + restore.stderr).to.equal(0);
    etcd = await clientAfterRestore(sandbox, etcd);
    expect(await etcd.get('/registry/s3test/kept').string()).to.equal('before');
    const journals = (await s3.objects()).filter((o) => /^kbur\/sandbox\/restores\/[^/]+\/journal\.json$/.test(o.key));
    expect(journals).to.have.length(1);

    const dump = await kbur('restore-dump', m.id, '--node', 'node-1', '--profile', 'blob', '--yes');
    expect(dump.code, dump.stdout + dump.stderr).to.equal(0);
    expect(await readFile(join(root, 'app.bin'))).to.deep.equal(blob);
  });

  it('restores a zstd-compressed, age-encrypted set from the bucket with the identity', async function () {
    const key = join(root, 'age-key.txt');
    await exec('age-keygen', ['-o', key]);
    const recipient = (await exec('age-keygen', ['-y', key])).stdout.trim();
    const sealed = await configWith('s3-sealed', {
      repository: s3Repository(s3),
      compression: 'zstd',
      encryption: { recipients: [recipient] },
    });
    await etcd.put('/registry/s3test/sealed').value('before');
    const run = await kburWith(sealed, 'backup', '--json');
    expect(run.code, run.stderr).to.equal(0);
    const m = JSON.parse(run.stdout) as Manifest;
    const snapshot = m.artifacts.find((a) => a.kind === 'etcd-snapshot')!;
    expect([snapshot.path, snapshot.encryption]).to.deep.equal(['etcd/snapshot.db.zst.age', 'age']);
    expect((await object(objectKey(m.id, snapshot.path)))!.subarray(0, 21).toString()).to.equal('age-encryption.org/v1');
    await etcd.delete().key('/registry/s3test/sealed');

    const restore = await kburWith(sealed, 'restore', m.id, '--yes', '--identity', key);
    expect(restore.code, restore.stdout + restore.stderr).to.equal(0);
    etcd = await clientAfterRestore(sandbox, etcd);
    expect(await etcd.get('/registry/s3test/sealed').string()).to.equal('before');
  });

  it('aborts the multipart upload of a backup cancelled mid-upload: the server keeps no parts', async function () {
    const run = spawnKbur(['--config', config, 'backup'], { AWS_EC2_METADATA_DISABLED: 'true' });
    const before = s3.log().length;
    await s3.waitForLog(/partNumber=1&/, { after: before });
    run.child.kill('SIGINT');
    const done = await run.done;
    printed.push(done.stdout, done.stderr);
    expect(done.code, done.stderr).to.equal(10);
    expect(await s3.pendingMultipartUploads()).to.deep.equal([]);
    expect(s3.log().slice(before)).to.match(/"method":"DELETE","url":"[^"]*uploadId=/);
  });

  it('gives a Failed backup, exit 4 and no manifest when the S3 server is killed mid-upload', async function () {
    const run = spawnKbur(['--config', config, 'backup'], { AWS_EC2_METADATA_DISABLED: 'true' });
    await s3.waitForLog(/partNumber=1&/, { after: s3.log().length });
    await s3.kill();
    const done = await run.done;
    printed.push(done.stdout, done.stderr);
    await s3.restart();
    expect(done.code, done.stdout + done.stderr).to.equal(4);
    const id = /^backup (\S+): Failed/m.exec(done.stdout)?.[1];
    expect(id, done.stdout).to.be.a('string');
    expect(done.stdout).to.match(/FAILED manifest: manifest\.json not written, so this set is not a backup: .*unreachable/);
    expect(done.stdout).to.match(/FAILED etcd: .*upload of s3:\/\/kbur-backups\/kbur\/sandbox\/backups\/\S+\/etcd\/snapshot\.db failed/);
    expect(await object(objectKey(id!, 'manifest.json'))).to.equal(undefined);
    const list = JSON.parse((await kbur('list', '--json')).stdout) as { id: string; phase: string }[];
    expect(list.find((r) => r.id === id)?.phase ?? 'Incomplete').to.equal('Incomplete');
    // The server was dead while kbur tried to abort: the upload it holds is the one kbur named.
    for (const uploadId of await s3.pendingMultipartUploads()) expect(done.stderr).to.contain(uploadId);
  });

  it("reports the killed backup's lock stale until unlock --force; the next backup removes the set it left", async function () {
    const leftover = (await s3.objects()).map((o) => o.key).filter((k) => k.startsWith('kbur/sandbox/backups/') && !k.includes('manifest'));
    const stale = await kbur('backup');
    expect(stale.code, stale.stderr).to.equal(12);
    expect(stale.stderr).to.match(/locked by backup on host \S+, pid \d+, .*which is stale: process \d+ no longer runs on this host/);
    expect(stale.stderr).to.contain('kbur unlock --force');
    const unlock = await kbur('unlock', '--force');
    expect(unlock.code, unlock.stderr).to.equal(0);

    const m = await backup();
    expect(m.phase).to.equal('Completed');
    const left = (await s3.objects()).map((o) => o.key);
    const killedIds = new Set(leftover.map((k) => k.split('/')[3]).filter((id) => !left.includes(objectKey(id!, 'manifest.json'))));
    for (const id of killedIds)
      expect(
        left.filter((k) => k.includes(`/backups/${id}/`)),
        `leftover ${id}`,
      ).to.deep.equal([]);
  });

  it('runs one of two backups started together and refuses the other; the lock is a lease object on a server without conditional PUT', async function () {
    const said = await twoBackupsTogether(config);
    expect(said).to.contain('S3 lock: lease object (the server ignores If-None-Match)');
    expect(
      (await s3.objects()).some((o) => o.key === 'kbur/sandbox/kbur.lock'),
      'released',
    ).to.equal(false);
  });

  it('takes the lock with a conditional PUT where the server honours If-None-Match: one of two backups runs, the other is refused', async function () {
    const strict = await startS3Server({ dir: join(root, 's3-conditional'), conditionalPuts: true });
    try {
      // The server itself: a second conditional PUT of one key is refused with S3's 412.
      const client = new S3Client({
        endpoint: strict.endpoint,
        region: 'us-east-1',
        forcePathStyle: true,
        credentials: strict.credentials,
      });
      const put = (): Promise<unknown> =>
        client.send(new PutObjectCommand({ Bucket: strict.bucket, Key: 'probe/once', Body: 'x', IfNoneMatch: '*' }));
      await put();
      const second = await put().then(
        () => undefined,
        (e: { $metadata?: { httpStatusCode?: number } }) => e.$metadata?.httpStatusCode,
      );
      expect(second).to.equal(412);
      client.destroy();

      const said = await twoBackupsTogether(await configWith('s3-conditional', { repository: s3Repository(strict) }));
      expect(said).to.contain('S3 lock: conditional PUT (If-None-Match: *)');
      expect(said).not.to.contain('lease object');
      const keys = (await strict.objects()).map((o) => o.key);
      expect(keys, 'released').not.to.include('kbur/sandbox/kbur.lock');
      expect(
        keys.filter((k) => k.endsWith('/manifest.json')),
        'exactly one backup written',
      ).to.have.length(1);
    } finally {
      await strict.stop();
    }
  });

  it('prunes the bucket by the retention policy and leaves a foreign object alone', async function () {
    const client = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: s3.credentials });
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: 'kbur/sandbox/backups/notes.txt', Body: 'not a backup' }));
    client.destroy();
    const newest = await backup();
    await kbur('verify', newest.id);
    const file = await configWith('prune', { repository: s3Repository(s3), retention: { keepLast: 1 } });
    const run = await kburWith(file, 'prune', '--json');
    expect(run.code, run.stderr).to.equal(0);
    const result = JSON.parse(run.stdout) as { kept: { id: string }[]; deleted: { id: string }[] };
    expect(result.kept.map((k) => k.id)).to.include(newest.id);
    expect(result.deleted.length).to.be.greaterThan(0);
    const keys = (await s3.objects()).map((o) => o.key);
    for (const d of result.deleted)
      expect(
        keys.filter((k) => k.includes(`/backups/${d.id}/`)),
        d.id,
      ).to.deep.equal([]);
    expect(keys).to.include(objectKey(newest.id, 'manifest.json'));
    expect(keys).to.include('kbur/sandbox/backups/notes.txt');
  });

  it('never writes the access key or the secret to a log line or an object of the set', async function () {
    const { accessKeyId, secretAccessKey } = s3.credentials;
    const logs = await readdir(join(root, 'logs'));
    const texts = [
      ...printed,
      s3.log(),
      ...(await Promise.all(logs.map((f) => readFile(join(root, 'logs', f), 'utf8')))),
      ...(await Promise.all(
        (await s3.objects()).flatMap((o) => [o.file, o.metaFile]).map(async (f) => (await readFile(f)).toString('latin1')),
      )),
    ];
    expect(texts.length).to.be.greaterThan(10);
    for (const t of texts) {
      expect(t.includes(accessKeyId), 'access key found').to.equal(false);
      expect(t.includes(secretAccessKey), 'secret found').to.equal(false);
    }
  });

  describe('bad inputs, each a clear error naming what to fix', function () {
    it('a bucket that does not exist', async function () {
      const file = await configWith('nobucket', { repository: { ...s3Repository(s3), bucket: 'no-such-bucket' } });
      for (const cmd of [['list'], ['backup']]) {
        const run = await kburWith(file, ...cmd);
        expect(run.code, `${cmd[0]}: ${run.stderr}`).to.equal(9);
        expect(run.stderr).to.contain('bucket "no-such-bucket"').and.contain('does not exist').and.contain('repository.bucket');
      }
    });

    it('an endpoint nothing answers on', async function () {
      const file = await configWith('noendpoint', { repository: { ...s3Repository(s3), endpoint: `http://${s3.host}:1` } });
      const run = await kburWith(file, 'list');
      expect(run.code, run.stderr).to.equal(7);
      expect(run.stderr).to.contain(`S3 endpoint http://${s3.host}:1 unreachable`).and.contain('repository.endpoint');
    });

    it('credentials the server refuses: a wrong secret, an unknown key', async function () {
      const wrong = [
        ['wrong-secret', s3.credentials.accessKeyId, 'not-the-secret'],
        ['unknown-key', 'AKIANOTAKEYOFTHISSERVER', s3.credentials.secretAccessKey],
      ] as const;
      for (const [name, key, secret] of wrong) {
        const file = join(root, name);
        await writeFile(file, `[default]\naws_access_key_id = ${key}\naws_secret_access_key = ${secret}\n`, { mode: 0o600 });
        const config = await configWith(name, { repository: { ...s3Repository(s3), credentialsFile: file } });
        for (const cmd of [['list'], ['backup']]) {
          const run = await kburWith(config, ...cmd);
          expect(run.code, `${name} ${cmd[0]}: ${run.stderr}`).to.equal(8);
          expect(run.stderr).to.contain('refused the credentials').and.contain('repository.credentialsFile');
          expect(run.stderr).to.not.contain(secret);
        }
      }
    });

    it('a credentials file that is missing or lacks the secret', async function () {
      const missing = await configWith('nocreds', { repository: { ...s3Repository(s3), credentialsFile: join(root, 'nope') } });
      const run = await kburWith(missing, 'list');
      expect(run.code).to.equal(2);
      expect(run.stderr).to.contain(`repository.credentialsFile ${join(root, 'nope')} cannot be read (ENOENT)`);

      const half = join(root, 'half-credentials');
      await writeFile(half, `[default]\naws_access_key_id = ${s3.credentials.accessKeyId}\n`, { mode: 0o600 });
      const partial = await kburWith(await configWith('halfcreds', { repository: { ...s3Repository(s3), credentialsFile: half } }), 'list');
      expect(partial.code).to.equal(2);
      expect(partial.stderr).to.contain('[default] has no aws_secret_access_key');
    });

    it('a malformed repository section', async function () {
      const run = await kburWith(
        await configWith('malformed', { repository: { ...s3Repository(s3), bucket: 'Not_A_Bucket', endpoint: 'ftp://x' } }),
        'list',
      );
      expect(run.code).to.equal(2);
      expect(run.stderr).to.match(/"repository\.bucket": expected an S3 bucket name/);
      expect(run.stderr).to.match(/"repository\.endpoint": expected an http:\/\/ or https:\/\/ URL/);
    });
  });
});

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { loadCoordinatorConfig, type S3RepositoryConfig } from '../../coordinator/config.js';
import { S3Repository } from '../../coordinator/repository/s3.js';
import { readCredentialsFile } from '../../coordinator/repository/s3-credentials.js';
import { KburError } from '../../shared/errors.js';
import { createLogger } from '../../shared/log.js';

const HEAD = 'cluster: demo\ntls: {ca: a, cert: b, key: c}\nnodes:\n  - {name: n, agent: 127.0.0.12:7443}\n';

describe('S3 repository config', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kbur-unit-s3-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  const load = async (repository: string): Promise<unknown> => {
    const file = join(dir, 'kbur.yaml');
    await writeFile(file, `${HEAD}repository: ${repository}\n`);
    return loadCoordinatorConfig(file).then(
      (c) => c.repository,
      (e: unknown) => e,
    );
  };

  it('takes bucket, prefix, endpoint, region, path style and a credentials file relative to kbur.yaml', async () => {
    const repo = await load(
      '{type: s3, bucket: dr-backups, prefix: /clusters/prod/, endpoint: "http://10.0.0.5:9000", region: eu-west-1, forcePathStyle: true, credentialsFile: s3.ini}',
    );
    expect(repo).to.deep.equal({
      type: 's3',
      bucket: 'dr-backups',
      prefix: 'clusters/prod',
      endpoint: 'http://10.0.0.5:9000',
      region: 'eu-west-1',
      forcePathStyle: true,
      credentialsFile: join(dir, 's3.ini'),
    });
  });

  it('defaults to the bucket root, virtual-hosted style and the AWS credential chain', async () => {
    expect(await load('{type: s3, bucket: dr-backups}')).to.deep.equal({
      type: 's3',
      bucket: 'dr-backups',
      prefix: '',
      forcePathStyle: false,
    });
  });

  it('names every malformed key: bucket, prefix, endpoint, an unknown key', async () => {
    const err = (await load('{type: s3, bucket: My_Bucket, prefix: "a/../b", endpoint: "ftp://host", secretKey: x}')) as KburError;
    expect(err).to.be.instanceOf(KburError);
    expect(err.code).to.equal('INVALID_CONFIG');
    expect(err.message).to.contain('unknown key "repository.secretKey"');
    expect(err.message).to.contain('"repository.bucket": expected an S3 bucket name');
    expect(err.message).to.contain('"repository.prefix": expected a key prefix');
    expect(err.message).to.contain('"repository.endpoint": expected an http:// or https:// URL');
  });

  it('requires a bucket', async () => {
    const err = (await load('{type: s3, endpoint: "http://127.0.0.1:9000"}')) as KburError;
    expect(err.message).to.match(/"repository\.bucket"/);
  });
});

describe('S3 credentials file', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kbur-unit-s3-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('reads the [default] profile of an AWS shared-credentials file', async () => {
    const file = join(dir, 'credentials');
    await writeFile(
      file,
      '# minio\n[other]\naws_access_key_id = X\n\n[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = s3cr3t/+=\n',
    );
    expect(await readCredentialsFile(file)).to.deep.equal({ accessKeyId: 'AKIAEXAMPLE', secretAccessKey: 's3cr3t/+=' });
  });

  it('names what is missing, never a value', async () => {
    const file = join(dir, 'credentials');
    await writeFile(file, '[default]\naws_access_key_id = AKIAEXAMPLE\n');
    const err = (await readCredentialsFile(file).catch((e: unknown) => e)) as KburError;
    expect([err.code, err.message]).to.deep.equal([
      'INVALID_CONFIG',
      `repository.credentialsFile ${file}: [default] has no aws_secret_access_key`,
    ]);
    await writeFile(file, '[prod]\naws_access_key_id = AKIAEXAMPLE\n');
    const none = (await readCredentialsFile(file).catch((e: unknown) => e)) as KburError;
    expect(none.message).to.equal(`repository.credentialsFile ${file} has no [default] profile`);
    expect(none.hint).to.contain('aws_secret_access_key');
  });
});

describe('S3 errors as kbur errors', () => {
  let dir: string;
  let repo: S3Repository;
  const config: S3RepositoryConfig = {
    type: 's3',
    bucket: 'dr-backups',
    prefix: 'kbur',
    endpoint: 'http://127.0.0.1:9',
    forcePathStyle: true,
  };
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kbur-unit-s3-'));
    await writeFile(join(dir, 'credentials'), '[default]\naws_access_key_id = AKIAUNITTEST\naws_secret_access_key = not-so-secret\n');
    repo = await S3Repository.open(
      { ...config, credentialsFile: join(dir, 'credentials') },
      { log: createLogger({ component: 'test', level: 'error' }), requestTimeoutMs: 1000 },
    );
  });
  after(() => rm(dir, { recursive: true, force: true }));

  /** What the AWS SDK throws for an error response: a named error with the HTTP status in $metadata. */
  const serviceError = (name: string, status: number, message: string): Error =>
    Object.assign(new Error(message), { name, $metadata: { httpStatusCode: status } });

  it('refused credentials: PERMISSION_DENIED, pointing at the credentials, with neither key in the message', () => {
    for (const name of ['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied']) {
      const e = repo.toKburError(serviceError(name, 403, 'The key AKIAUNITTEST / not-so-secret was refused'), 'cannot list');
      expect(e.code, name).to.equal('PERMISSION_DENIED');
      expect(e.message).to.contain('bucket "dr-backups" on http://127.0.0.1:9 refused the credentials');
      expect(e.message).to.not.contain('AKIAUNITTEST').and.not.contain('not-so-secret');
      expect(e.hint).to.contain('repository.credentialsFile');
    }
  });

  it('a missing bucket: FAILED_PRECONDITION naming repository.bucket', () => {
    const e = repo.toKburError(serviceError('NoSuchBucket', 404, 'The specified bucket does not exist'), 'cannot list');
    expect([e.code, e.message]).to.deep.equal([
      'FAILED_PRECONDITION',
      'cannot list: bucket "dr-backups" on http://127.0.0.1:9 does not exist',
    ]);
    expect(e.hint).to.contain('repository.bucket');
  });

  it('no answer, or a 5xx: UNAVAILABLE naming the endpoint, retryable', () => {
    const refused = repo.toKburError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' }), 'cannot list');
    expect([refused.code, refused.retryable]).to.deep.equal(['UNAVAILABLE', true]);
    expect(refused.message).to.contain('S3 endpoint http://127.0.0.1:9 unreachable');
    expect(refused.hint).to.contain('repository.endpoint');
    expect(repo.toKburError(serviceError('InternalError', 503, 'slow down'), 'x').code).to.equal('UNAVAILABLE');
  });

  it('names AWS S3 and its region when no endpoint is set', async () => {
    const aws = await S3Repository.open(
      { ...config, endpoint: undefined, region: 'eu-west-3', credentialsFile: join(dir, 'credentials') },
      { log: createLogger({ component: 'test', level: 'error' }), requestTimeoutMs: 1000 },
    );
    expect(aws.toKburError(serviceError('NoSuchBucket', 404, 'x'), 'cannot list').message).to.equal(
      'cannot list: bucket "dr-backups" on AWS S3 (eu-west-3) does not exist',
    );
  });

  it('keeps artifact paths of a manifest inside the backup', () => {
    expect(repo.artifactLocation('prod', '20261125T234512Z-07b3', 'etcd/snapshot.db')).to.equal(
      's3://dr-backups/kbur/prod/backups/20261125T234512Z-07b3/etcd/snapshot.db',
    );
    expect(() => repo.artifactLocation('prod', '20261125T234512Z-07b3', '../20261125T234512Z-07b4/etcd/snapshot.db')).to.throw(
      /leaves the backup folder/,
    );
  });
});

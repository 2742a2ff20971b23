import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { loadCoordinatorConfig } from '../../coordinator/config.js';
import { KburError } from '../../shared/errors.js';

const BASE =
  'cluster: demo\ntls: {ca: a, cert: b, key: c}\nnodes:\n  - {name: n, agent: 127.0.0.12:7443}\nrepository: {type: local, path: repo}\n';

describe("kbur.yaml: the scratch etcd and the cluster's etcd", () => {
  let dir: string;
  const load = async (extra: string): Promise<unknown> => {
    const file = join(dir, 'kbur.yaml');
    await writeFile(file, BASE + extra);
    return loadCoordinatorConfig(file).catch((e: unknown) => e);
  };
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kbur-unit-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('needs neither; resolves their paths against the config file', async () => {
    const none = (await load('')) as Awaited<ReturnType<typeof loadCoordinatorConfig>>;
    expect(none.scratch).to.deep.equal({});
    expect(none.etcd).to.equal(undefined);
    const c = (await load(
      'scratch: {etcd: bin/etcd, dir: scratch}\netcd: {endpoints: [https://10.0.0.11:2379], ca: pki/ca.crt, cert: pki/c.crt, key: pki/c.key}\n',
    )) as Awaited<ReturnType<typeof loadCoordinatorConfig>>;
    expect(c.scratch).to.deep.equal({ etcd: join(dir, 'bin/etcd'), dir: join(dir, 'scratch') });
    expect(c.etcd!.ca).to.equal(join(dir, 'pki/ca.crt'));
    expect(c.etcd!.endpoints).to.deep.equal(['https://10.0.0.11:2379']);
  });

  it('names an etcd endpoint that is not a client URL, and an unknown scratch key', async () => {
    const err = await load('etcd: {endpoints: [10.0.0.11:2379], ca: a, cert: b, key: c}\n');
    expect(KburError.hasCode(err, 'INVALID_CONFIG')).to.equal(true);
    expect((err as KburError).message).to.contain('"etcd.endpoints.0": expected a client URL, e.g. https://10.0.0.11:2379');
    const unknown = (await load('scratch: {etcdBinary: /usr/bin/etcd}\n')) as KburError;
    expect(unknown.message).to.contain('etcdBinary');
  });
});

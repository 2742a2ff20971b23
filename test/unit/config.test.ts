import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { loadAgentConfig } from '../../agent/config.js';
import { loadCoordinatorConfig } from '../../coordinator/config.js';
import { KburError } from '../../shared/errors.js';

const GOOD_AGENT = `node: node-1
listen: 127.0.0.11:7443
tls: {ca: /etc/kbur/ca.crt, cert: /etc/kbur/agent.crt, key: /etc/kbur/agent.key}
clients: {kbur-admin: admin, monitoring: monitor}
`;

describe('agent config', () => {
  let dir: string;
  const write = async (text: string): Promise<string> => {
    const file = join(dir, 'agent.yaml');
    await writeFile(file, text);
    return file;
  };
  const failure = async (file: string): Promise<KburError> => {
    const err = await loadAgentConfig(file).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(KburError.hasCode(err, 'INVALID_CONFIG'), String(err)).to.equal(true);
    return err as KburError;
  };
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kbur-unit-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('fills the documented defaults', async () => {
    const c = await loadAgentConfig(await write(GOOD_AGENT));
    expect(c.kubernetesDir).to.equal('/etc/kubernetes');
    expect(c.stateDir).to.equal('/var/lib/kbur');
    expect(c.etcd).to.deep.equal({ stopTimeout: 60 });
    expect(c.clients).to.deep.equal({ 'kbur-admin': 'admin', monitoring: 'monitor' });
  });

  it('names a missing file and what to do', async () => {
    const err = await failure(join(dir, 'nope.yaml'));
    expect(err.message).to.contain('nope.yaml does not exist');
    expect(err.hint).to.match(/--config/);
  });

  it('names the line of a YAML syntax error', async () => {
    const err = await failure(await write(GOOD_AGENT + 'stateDir: [unclosed\n'));
    expect(err.message).to.match(/agent\.yaml:\d+:\d+: YAML syntax error/);
  });

  it('names an unknown key and its line', async () => {
    const err = await failure(await write(GOOD_AGENT + 'listne: 1.2.3.4:5\n'));
    expect(err.message).to.match(/agent\.yaml:5: unknown key "listne"/);
  });

  it('names a key of the wrong type, its line and what was expected', async () => {
    const err = await failure(await write(GOOD_AGENT.replace('kbur-admin: admin', 'kbur-admin: root')));
    expect(err.message).to.match(/agent\.yaml:4: "clients\.kbur-admin": .*"admin"\|"operator"\|"monitor"/);
  });

  it('refuses a relative path', async () => {
    const err = await failure(await write(GOOD_AGENT + 'stateDir: var/lib/kbur\n'));
    expect(err.message).to.contain('"stateDir": expected an absolute path');
  });
});

describe('coordinator config', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kbur-unit-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('resolves relative paths against the config file', async () => {
    const file = join(dir, 'kbur.yaml');
    await writeFile(
      file,
      'cluster: demo\ntls: {ca: pki/ca.crt, cert: pki/a.crt, key: pki/a.key}\nnodes:\n  - {name: node-1, agent: 127.0.0.11:7443}\nrepository: {type: local, path: repo}\n',
    );
    const c = await loadCoordinatorConfig(file);
    expect(c.tls.ca).to.equal(join(dir, 'pki/ca.crt'));
    expect(c.repository).to.deep.equal({ type: 'local', path: join(dir, 'repo') });
  });

  it('refuses duplicate node names and a node name that would escape the repository', async () => {
    const file = join(dir, 'kbur.yaml');
    await writeFile(
      file,
      'cluster: demo\ntls: {ca: a, cert: b, key: c}\nnodes:\n  - {name: ../x, agent: 127.0.0.11:7443}\n  - {name: n, agent: 127.0.0.12:7443}\n  - {name: n, agent: 127.0.0.13:7443}\nrepository: {type: local, path: repo}\n',
    );
    const err = (await loadCoordinatorConfig(file).catch((e: unknown) => e)) as KburError;
    expect(err.message).to.contain('"nodes.0.name": expected a node name');
    expect(err.message).to.contain('node names must be unique');
  });

  it('names an unsupported repository type', async () => {
    const file = join(dir, 'kbur.yaml');
    await writeFile(
      file,
      'cluster: demo\ntls: {ca: a, cert: b, key: c}\nnodes:\n  - {name: n, agent: 127.0.0.12:7443}\nrepository: {type: ftp, path: repo}\n',
    );
    const err = (await loadCoordinatorConfig(file).catch((e: unknown) => e)) as KburError;
    expect(err.message).to.match(/kbur\.yaml:5: "repository.type"/);
  });
});

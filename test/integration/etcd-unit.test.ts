// etcd run as a systemd unit (etcd.unit in the agent config) instead of a static pod: a restore
// stops and starts the unit, and a rollback stops it too before it puts the old data back. The
// unit is run by a stand-in for systemctl that really starts and stops the member.
import { readdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { parse, stringify } from 'yaml';
import type { Manifest } from '../../shared/manifest.js';
import { runKbur } from '../helpers/kbur.js';
import { createSandbox, waitForEtcdHealthy, type Sandbox, type SandboxNode } from '../sandbox/cluster.js';
import { installSystemctlStandIn, type SystemctlStandIn } from '../sandbox/systemctl.js';

describe('kbur restore with etcd run as a systemd unit', function () {
  this.timeout(240_000);
  const UNIT = 'etcd.service';
  let root: string;
  let sandbox: Sandbox | undefined;
  let node: SandboxNode;
  let units: SystemctlStandIn;
  let path: string | undefined;
  let backupId: string;
  let restoreId: string;
  let keysBefore: string[];

  const kbur = (...args: string[]) => runKbur(['--config', sandbox!.coordinatorConfig, ...args]);
  const keys = async (): Promise<string[]> =>
    (await sandbox!.etcdctl(['get', '--prefix', '/registry/', '--keys-only'])).split('\n').filter(Boolean).sort();
  const healthy = (): Promise<void> => waitForEtcdHealthy(sandbox!, [node.clientUrl], 60_000);

  before(async function () {
    root = await mkdtemp(join(tmpdir(), 'kbur-etcd-unit-test-'));
    sandbox = await createSandbox({ root: join(root, 'sandbox'), nodes: 1 });
    node = sandbox.nodes[0]!;
    // From static pod to unit: the kubelet stops etcd once its manifest is gone; the unit runs the same command.
    const manifest = parse(await readFile(join(node.manifestsDir, 'etcd.yaml'), 'utf8')) as {
      spec: { containers: { command: string[] }[] };
    };
    await rename(join(node.manifestsDir, 'etcd.yaml'), join(node.dir, 'etcd.yaml.static'));
    await sandbox.kubelet.waitFor(node.name, 'etcd', 'stopped');
    units = await installSystemctlStandIn(join(root, 'systemd'));
    await units.defineUnit(UNIT, manifest.spec.containers[0]!.command);
    await units.systemctl('start', UNIT);
    await healthy();

    const pki = join(node.kubernetesDir, 'pki', 'etcd');
    const config = parse(await readFile(node.agentConfig, 'utf8')) as Record<string, unknown>;
    config.etcd = {
      unit: UNIT,
      endpoints: [node.clientUrl],
      name: node.name,
      dataDir: node.dataDir,
      ca: join(pki, 'ca.crt'),
      cert: join(pki, 'healthcheck-client.crt'),
      key: join(pki, 'healthcheck-client.key'),
      stopTimeout: 20,
    };
    await writeFile(node.agentConfig, stringify(config));
    // The agent runs `systemctl` from its PATH, which it takes from this process.
    path = process.env.PATH;
    process.env.PATH = `${units.binDir}:${path ?? ''}`;
    await sandbox.startAgents();
  });

  after(async function () {
    await sandbox?.stop();
    if (units) await units.systemctl('stop', UNIT);
    if (path !== undefined) process.env.PATH = path;
    await rm(root, { recursive: true, force: true });
  });

  it('restores the member: the unit is stopped, the data dir moved aside, and the unit started on the restored data', async function () {
    const backup = await kbur('backup', '--json');
    expect(backup.code, backup.stderr).to.equal(0);
    backupId = (JSON.parse(backup.stdout) as Manifest).id;
    await sandbox!.etcdctl(['put', '/registry/configmaps/demo/written-after-backup', 'y']);
    keysBefore = await keys();
    const pid = await units.pid(UNIT);

    const run = await kbur('restore', backupId, '--yes');
    expect(run.code, run.stdout + run.stderr).to.equal(0);
    restoreId = /restore (\S+) started/.exec(run.stdout)![1]!;
    expect(run.stdout).to.contain(`stopped ${UNIT}`);
    expect(run.stdout).to.contain(`started ${UNIT}`);
    await healthy();
    expect(await units.pid(UNIT), 'a new etcd process')
      .to.be.a('number')
      .and.not.equal(pid);
    expect(await keys()).to.not.include('/registry/configmaps/demo/written-after-backup');
    expect(await readdir(node.dir)).to.include(`etcd-data.kbur-${restoreId}`);
  });

  it('rolls the restore back: the unit is stopped, the old data put back, the unit started again', async function () {
    const pid = await units.pid(UNIT);
    const started = Date.now();
    const rollback = await kbur('restore', '--rollback', restoreId, '--yes');
    expect(rollback.code, rollback.stdout + rollback.stderr).to.equal(0);
    expect(Date.now() - started, 'no wait for a stop timeout').to.be.below(20_000);
    expect(rollback.stdout).to.contain(`stopped ${UNIT}`);
    await healthy();
    expect(await units.pid(UNIT), 'a new etcd process')
      .to.be.a('number')
      .and.not.equal(pid);
    expect(await keys()).to.deep.equal(keysBefore);
    expect(await readdir(node.dir)).to.include(`etcd-data.kbur-${restoreId}-restored`);
  });
});

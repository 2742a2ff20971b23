// The .deb as an operator installs it, on this machine: `npm run package`'s packaging step, dpkg -i,
// the installed kbur-agent and kbur (with a PATH that has no node) backing up and restoring the
// sandbox, systemd-analyze verify on the installed units, then dpkg -r. Root and dpkg only. A kbur
// package installed by someone else is left alone (the test is skipped); an existing /etc/kbur is
// moved aside for the test and put back afterwards.
import { execFile } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readFile, readdir, realpath, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { pathExists } from '../../shared/path-exists.js';
import type { Manifest } from '../../shared/manifest.js';
import { spawnKbur, type KburRun } from '../helpers/kbur.js';
import { createSandbox, type Sandbox } from '../sandbox/cluster.js';

const exec = promisify(execFile);
const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const PACKAGE_SCRIPT = fileURLToPath(new URL('../../scripts/package.js', import.meta.url));
const ETC = '/etc/kbur';
const UNITS = ['kbur-agent.service', 'kbur-backup.service', 'kbur-backup.timer'].map((u) => `/usr/lib/systemd/system/${u}`);
const PROGRAM_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** A directory of links to every program of the system's bin dirs but node: a PATH on which kbur finds its tools and no Node. */
async function pathWithoutNode(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const seen = new Set<string>();
  for (const bin of PROGRAM_DIRS) {
    const real = await realpath(bin).catch(() => undefined);
    if (!real || seen.has(real)) continue;
    seen.add(real);
    for (const name of await readdir(bin)) {
      if (/^(node|nodejs|npm|npx|corepack)$/.test(name) || (await pathExists(join(dir, name)))) continue;
      await symlink(join(bin, name), join(dir, name));
    }
  }
  return dir;
}

function installedKbur(args: string[], env: NodeJS.ProcessEnv): Promise<KburRun> {
  return spawnKbur(args, env, ['/usr/bin/kbur']).done;
}

describe('the .deb: install, back up and restore with the single executables, remove', function () {
  this.timeout(600_000);
  let root: string;
  let sandbox: Sandbox | undefined;
  let etcAside: string | undefined;
  let installed = false;
  let env: NodeJS.ProcessEnv;

  before(async function () {
    if (process.getuid?.() !== 0 || !(await pathExists('/usr/bin/dpkg'))) {
      console.warn('      (skipped: installing the .deb needs root and dpkg; CI runs as root on Debian)');
      return this.skip();
    }
    const status = await exec('dpkg-query', ['-W', '-f', '${Status}', 'kbur']).catch(() => ({ stdout: '' }));
    if (status.stdout.includes('installed')) {
      console.warn('      (skipped: a kbur package is installed on this machine; this test never replaces it)');
      return this.skip();
    }
    root = await mkdtemp(join(tmpdir(), 'kbur-package-test-'));
    if (await pathExists(ETC)) {
      etcAside = `${ETC}.kbur-test-${Date.now()}`;
      await rename(ETC, etcAside);
    }
    env = { PATH: await pathWithoutNode(join(root, 'bin')), KBUR_SANDBOX_NETWORK: process.env.KBUR_SANDBOX_NETWORK };
  });

  after(async function () {
    await sandbox?.stop();
    if (installed) await exec('dpkg', ['--purge', 'kbur']).catch(() => undefined);
    if (root) {
      // /etc/kbur is the operator's after dpkg -r; here it is the test's, made by the install.
      await rm(ETC, { recursive: true, force: true });
      if (etcAside) await rename(etcAside, ETC);
      await rm(root, { recursive: true, force: true });
    }
  });

  it('npm run package makes both executables and a .deb; dpkg -i installs them and starts nothing', async function () {
    const started = Date.now();
    const { stdout } = await exec(process.execPath, [PACKAGE_SCRIPT], { cwd: REPO, maxBuffer: 16 << 20 });
    const deb = stdout.match(/(\S+\.deb)\s/)?.[1];
    expect(deb, stdout).to.be.a('string');
    console.log(`      (packaged in ${((Date.now() - started) / 1000).toFixed(1)} s)`);

    await exec('dpkg', ['-i', deb!]);
    installed = true;
    for (const file of ['/usr/bin/kbur', '/usr/bin/kbur-agent', ...UNITS, '/usr/share/doc/kbur/examples/agent.yaml']) {
      expect(await pathExists(file), file).to.equal(true);
    }
    expect((await stat(ETC)).mode & 0o777).to.equal(0o700);
    // Nothing enabled: no unit of ours linked into any .wants directory.
    const wants = await exec('find', ['/etc/systemd/system', '-name', 'kbur*']).catch(() => ({ stdout: '' }));
    expect(wants.stdout.trim()).to.equal('');
    const version = await installedKbur(['--version'], env);
    expect(version.code, version.stderr).to.equal(0);
    const node = await exec('node', ['--version'], { env }).then(
      () => 'found',
      () => 'not found',
    );
    expect(node, 'node on the PATH the installed programs run with').to.equal('not found');
  });

  it('the installed units pass systemd-analyze verify', async function () {
    const { stderr } = await exec('systemd-analyze', ['verify', ...UNITS]);
    expect(stderr).to.not.match(/kbur/);
  });

  it('the installed kbur-agent and kbur back up and restore the sandbox, with no node on their PATH', async function () {
    sandbox = await createSandbox({ root: join(root, 'sandbox'), agent: { command: ['/usr/bin/kbur-agent'], env } });
    await sandbox.startAgents();
    const log = await readFile(join(sandbox.root, 'logs', 'agent-node-1.log'), 'utf8');
    expect(log).to.match(/"nodeFlags":\["--max-semi-space-size=2","--no-memory-reducer","--no-incremental-marking"\]/);

    const backup = await installedKbur(['--config', sandbox.coordinatorConfig, 'backup', '--json'], env);
    expect(backup.code, backup.stderr).to.equal(0);
    const manifest = JSON.parse(backup.stdout) as Manifest;
    expect(manifest.phase).to.equal('Completed');

    await sandbox.etcdctl(['put', '/kbur-test/after-backup', 'x']);
    const restore = await installedKbur(['--config', sandbox.coordinatorConfig, 'restore', manifest.id, '--yes'], env);
    expect(restore.code, restore.stderr).to.equal(0);
    expect(await sandbox.etcdctl(['get', '/kbur-test/after-backup'])).to.equal('', 'a key written after the backup is gone');
  });

  it('dpkg -r removes the programs and leaves /etc/kbur and every backup alone', async function () {
    await writeFile(join(ETC, 'kbur.yaml'), await readFile(sandbox!.coordinatorConfig), { mode: 0o600 });
    await sandbox!.stop();
    sandbox = undefined;
    await exec('dpkg', ['-r', 'kbur']);
    expect(await pathExists('/usr/bin/kbur')).to.equal(false);
    expect(await pathExists('/usr/bin/kbur-agent')).to.equal(false);
    expect(await pathExists(UNITS[0]!)).to.equal(false);
    expect((await lstat(join(ETC, 'kbur.yaml'))).isFile()).to.equal(true);
    const backups = await readdir(join(root, 'sandbox', 'repo', 'sandbox', 'backups'));
    expect(backups).to.have.length(1);
  });
});

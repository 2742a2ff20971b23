import { mkdir, readFile, readdir, rename, rmdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { basename, dirname, join } from 'node:path';
import { runTool } from '../../shared/child.js';
import { KburError } from '../../shared/errors.js';
import { pathExists } from '../../shared/path-exists.js';
import { heldRestoreId, kburDir } from '../../shared/restore-names.js';
import { fsyncDir } from '../../shared/streams.js';
import type { AgentState } from '../state.js';
import { readRecord, writeRecord, type RestoreRecord } from './record.js';
import { stepDone, stepDoneUnlessEmpty, type StepResult } from './step.js';

/** Stopped first and started last, so that nothing runs on stale or missing etcd data. */
export const CONTROL_PLANE_MANIFESTS = ['kube-apiserver.yaml', 'kube-controller-manager.yaml', 'kube-scheduler.yaml'];
export const ETCD_MANIFEST = 'etcd.yaml';

export function manifestsDir(s: AgentState): string {
  return s.etcd.settings.manifest ? dirname(s.etcd.settings.manifest) : join(s.config.kubernetesDir, 'manifests');
}

/** Beside manifests/ (same filesystem, so moves are renames) and outside the kubelet's sight. */
export function heldDir(s: AgentState, restoreId: string): string {
  return kburDir(s.config.kubernetesDir, 'held', restoreId);
}

export function etcdMode(s: AgentState): 'static-pod' | 'systemd' {
  return s.config.etcd.unit ? 'systemd' : 'static-pod';
}

/** The control-plane manifests in manifests/ now, and those this restore already holds. */
export async function presentManifests(s: AgentState, restoreId: string): Promise<string[]> {
  const wanted = [...CONTROL_PLANE_MANIFESTS, ...(etcdMode(s) === 'static-pod' ? [ETCD_MANIFEST] : [])];
  const here = new Set([...(await readdir(manifestsDir(s)).catch(() => [])), ...(await readdir(heldDir(s, restoreId)).catch(() => []))]);
  return wanted.filter((m) => here.has(m));
}

/** Moves the control plane's manifests out (etcd's last) or stops the etcd unit, then waits until etcd is gone. */
export async function stopControlPlane(s: AgentState, restoreId: string): Promise<StepResult> {
  const other = await restoreInProgress(s, restoreId);
  if (other) {
    throw new KburError('FAILED_PRECONDITION', `restore ${other} is still in progress on this node: it holds its control plane stopped`, {
      hint: `finish it (kbur restore --resume ${other}) or undo it (kbur restore --rollback ${other}) before another restore; nothing was stopped`,
    });
  }
  const record = await readRecord(s.config.stateDir, restoreId);
  const done: string[] = [];
  const names = [...CONTROL_PLANE_MANIFESTS, ...(etcdMode(s) === 'static-pod' ? [ETCD_MANIFEST] : [])];
  for (const name of names) {
    if (await holdManifest(s, record, name)) done.push(`moved ${name} out of ${manifestsDir(s)}`);
  }
  if (await stopEtcdUnit(s, record)) done.push(`stopped ${s.config.etcd.unit}`);
  // A node without a member (reset) has nothing to stop; its restore step waits on the member its archive describes.
  if (s.etcd.missing) return stepDone([...done, 'no etcd member here (a reset node): nothing to stop']);
  await waitEtcdStopped(s);
  return stepDoneUnlessEmpty(done);
}

/** systemd mode: stops the etcd unit, recorded so that startEtcd starts it again; false when there is none or it is stopped already. */
export async function stopEtcdUnit(s: AgentState, record: RestoreRecord): Promise<boolean> {
  if (etcdMode(s) !== 'systemd' || record.unitStopped) return false;
  await systemctl('stop', s.config.etcd.unit!);
  record.unitStopped = true;
  await writeRecord(s.config.stateDir, record);
  return true;
}

/** Puts etcd's manifest back (or starts the unit) and waits until the local member answers. */
export async function startEtcd(s: AgentState, restoreId: string): Promise<StepResult> {
  const record = await readRecord(s.config.stateDir, restoreId);
  const done: string[] = [];
  if (etcdMode(s) === 'systemd') {
    if (record.unitStopped) {
      await systemctl('start', s.config.etcd.unit!);
      record.unitStopped = false;
      await writeRecord(s.config.stateDir, record);
      done.push(`started ${s.config.etcd.unit}`);
    }
  } else if (await releaseManifest(s, record, ETCD_MANIFEST)) {
    done.push(`moved ${ETCD_MANIFEST} back into ${manifestsDir(s)}`);
  }
  await waitEtcdAnswers(s, restoreId);
  return stepDoneUnlessEmpty(done);
}

export async function startControlPlane(s: AgentState, restoreId: string): Promise<StepResult> {
  const record = await readRecord(s.config.stateDir, restoreId);
  const done: string[] = [];
  // Every manifest this restore holds but etcd's: the control plane's, and any other static pod its archive had.
  const held = record.held.map((h) => h.name).filter((n) => n !== ETCD_MANIFEST);
  const ordered = [...CONTROL_PLANE_MANIFESTS.filter((n) => held.includes(n)), ...held.filter((n) => !CONTROL_PLANE_MANIFESTS.includes(n))];
  for (const name of ordered) {
    if (await releaseManifest(s, record, name)) done.push(`moved ${name} back into ${manifestsDir(s)}`);
  }
  // The held folder is kbur's own; once empty it has no reason to stay.
  await rmdir(heldDir(s, restoreId)).catch(() => undefined);
  return stepDoneUnlessEmpty(done);
}

/** Another restore that stopped this node and has not started it again: it still holds manifests, or its unit. */
export async function restoreInProgress(s: AgentState, restoreId: string): Promise<string | undefined> {
  for (const entry of await readdir(s.config.kubernetesDir).catch(() => [] as string[])) {
    const id = heldRestoreId(entry);
    if (id && id !== restoreId && (await readdir(join(s.config.kubernetesDir, entry)).catch(() => [])).length > 0) return id;
  }
  for (const id of await readdir(join(s.config.stateDir, 'restores')).catch(() => [] as string[])) {
    if (id !== restoreId && (await readRecord(s.config.stateDir, id).catch(() => undefined))?.unitStopped) return id;
  }
  return undefined;
}

/** Moves one manifest out of manifests/ into the held folder; false when it is not there (already held, or none). */
export async function holdManifest(s: AgentState, record: RestoreRecord, name: string): Promise<boolean> {
  const from = join(manifestsDir(s), name);
  if (!(await pathExists(from))) return false;
  const dir = heldDir(s, record.restoreId);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const to = join(dir, name);
  if (await pathExists(to)) {
    throw new KburError('FAILED_PRECONDITION', `${name} is both in ${manifestsDir(s)} and in ${dir}`, {
      hint: `someone put a manifest back by hand during restore ${record.restoreId}; decide which one is right, remove the other, then resume`,
    });
  }
  // Recorded before the move: a crash between the two leaves a record that says where to look.
  record.held = [...record.held.filter((h) => h.name !== name), { name, from, to }];
  await writeRecord(s.config.stateDir, record);
  await rename(from, to);
  await fsyncDir(dirname(from));
  return true;
}

export async function releaseManifest(s: AgentState, record: RestoreRecord, name: string): Promise<boolean> {
  const held = record.held.find((h) => h.name === name);
  if (!held || !(await pathExists(held.to))) return false;
  if (await pathExists(held.from)) {
    throw new KburError('FAILED_PRECONDITION', `${held.from} exists again while kbur still holds ${held.to}`, {
      hint: 'someone put a manifest back by hand; decide which one is right, remove the other, then resume',
    });
  }
  await rename(held.to, held.from);
  await fsyncDir(dirname(held.from));
  return true;
}

/** Waits until no etcd process runs on this data dir and every port etcd listens on is free. */
export async function waitEtcdStopped(s: AgentState): Promise<void> {
  const deadline = Date.now() + s.config.etcd.stopTimeout * 1000;
  const dataDir = s.etcd.settings.dataDir;
  for (;;) {
    let pids = await etcdPids(dataDir);
    const waited = pids.length > 0;
    // The processes found are watched closely (one small read each) until they are gone; then the
    // whole process table is looked at again (a table read just now needs no second look), and the ports.
    while (pids.length && Date.now() <= deadline) {
      await sleep(EXIT_POLL_MS);
      pids = (await Promise.all(pids.map(async (pid) => ((await isEtcdOn(pid, dataDir)) ? [pid] : [])))).flat();
    }
    if (waited && pids.length === 0) pids = await etcdPids(dataDir);
    const busy = pids.length ? [] : await busyPorts(s.etcd.settings.listens);
    if (pids.length === 0 && busy.length === 0) return;
    if (Date.now() > deadline) {
      throw new KburError(
        'FAILED_PRECONDITION',
        pids.length
          ? `etcd (pid ${pids.join(', ')}) still runs on ${dataDir} ${s.config.etcd.stopTimeout} s after it was told to stop`
          : `etcd's ports ${busy.join(', ')} are still in use ${s.config.etcd.stopTimeout} s after it stopped`,
        { hint: 'find out why etcd does not stop (crictl ps, journalctl -u kubelet), stop it, then run kbur restore --resume' },
      );
    }
    await sleep(POLL_MS);
  }
}

async function waitEtcdAnswers(s: AgentState, restoreId: string): Promise<void> {
  const deadline = Date.now() + s.config.etcd.stopTimeout * 1000;
  for (;;) {
    const st = await s.etcd.status();
    if (st.reachable) return;
    if (Date.now() > deadline) {
      const dataDir = s.etcd.settings.dataDir;
      if (etcdMode(s) === 'static-pod' && (await etcdPids(dataDir)).length === 0) {
        throw new KburError(
          'UNAVAILABLE',
          `${ETCD_MANIFEST} is in ${manifestsDir(s)}, but ${s.config.etcd.stopTimeout} s later no etcd runs on ${dataDir}: the kubelet did not start it`,
          {
            hint: `check that the kubelet runs (systemctl status kubelet; journalctl -u kubelet) and that its staticPodPath (/var/lib/kubelet/config.yaml) is ${manifestsDir(s)}; once etcd runs, kbur restore --resume ${restoreId}`,
          },
        );
      }
      throw new KburError(
        'UNAVAILABLE',
        `etcd on ${s.etcd.settings.endpoint} does not answer ${s.config.etcd.stopTimeout} s after it was started: ${st.error}`,
        {
          hint: "look at etcd's log on this node (crictl logs, journalctl -u etcd); kbur restore --resume retries, --rollback puts the old data back",
        },
      );
    }
    await sleep(POLL_MS);
  }
}

/** Whether process `pid` is an etcd on this data dir: a zombie or a gone one has no command line. */
async function isEtcdOn(pid: number | string, dataDir: string): Promise<boolean> {
  const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
  if (basename(argv[0] ?? '') !== 'etcd') return false;
  const i = argv.indexOf('--data-dir');
  const dir = argv.find((a) => a.startsWith('--data-dir='))?.slice('--data-dir='.length) ?? (i >= 0 ? argv[i + 1] : undefined);
  return dir === dataDir;
}

/** Processes whose program is etcd and whose --data-dir is this one. */
export async function etcdPids(dataDir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (/^\d+$/.test(entry) && (await isEtcdOn(entry, dataDir))) pids.push(Number(entry));
  }
  return pids;
}

async function busyPorts(listens: { host: string; port: number }[]): Promise<string[]> {
  const busy: string[] = [];
  for (const { host, port } of listens) {
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', (err: NodeJS.ErrnoException) => resolve(err.code !== 'EADDRINUSE'));
      server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
    });
    if (!free) busy.push(`${host}:${port}`);
  }
  return busy;
}

async function systemctl(verb: 'start' | 'stop', unit: string): Promise<void> {
  await runTool('systemctl', [verb, unit], {
    timeout: 120_000,
    failure: {
      code: 'FAILED_PRECONDITION',
      what: `systemctl ${verb} ${unit} failed`,
      hint: `check the unit (systemctl status ${unit}); then kbur restore --resume`,
    },
  });
}

/** How often a restore step looks whether etcd stopped or answers: the control plane is down meanwhile. */
const POLL_MS = 50;
/** How often a stopping etcd process is looked at: one read of its /proc entry. */
const EXIT_POLL_MS = 20;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

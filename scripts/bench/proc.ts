import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

export const POLL_MS = 20;

export const CLK_TCK = ((): number => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** A `Vm*:` line of /proc/<pid>/status in KiB; undefined when the process is gone (or a zombie). */
export function procStatusKiB(pid: number, field: 'VmHWM' | 'VmRSS' | 'RssAnon'): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** utime+stime of a process in seconds; undefined when it is gone. */
export function procCpuSeconds(pid: number): number | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which may hold spaces and parentheses: state is field 3, utime 14, stime 15.
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
  } catch {
    return undefined;
  }
}

export function procArgv(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

export function pids(): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
}

export function findPid(what: string, match: (argv: string[]) => boolean): number {
  const found = pids().filter((pid) => match(procArgv(pid)));
  if (found.length !== 1) throw new Error(`expected one ${what} process, found ${found.length} (${found.join(', ') || 'none'})`);
  return found[0]!;
}

/** Every live process below `root` (the bench's own children, grandchildren...). */
export function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const pid of pids()) {
    try {
      const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
      parent.set(pid, Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    for (const [pid, ppid] of parent) {
      if (ppid === p) {
        out.push(pid);
        walk(pid);
      }
    }
  };
  walk(root);
  return out;
}

export interface Measured {
  code: number | null;
  signal: NodeJS.Signals | null;
  seconds: number;
  /** VmHWM, KiB, the largest seen while polling. */
  peakRssKiB: number;
  /** utime+stime, last seen while polling. */
  cpuSeconds: number;
  stdout: string;
  stderr: string;
}

/** Child processes running now, killed on Ctrl-C. */
export const running = new Set<ChildProcess>();

/**
 * Runs one process to its exit, polling its RSS and CPU. `onLine` gets every stdout line as it
 * arrives, with the seconds since the spawn.
 */
export async function measure(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  signal: AbortSignal,
  onLine?: (line: string, seconds: number) => void,
): Promise<Measured> {
  signal.throwIfAborted();
  const t0 = performance.now();
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  running.add(child);
  let stdout = '';
  let stderr = '';
  let partial = '';
  child.stdout.on('data', (d: Buffer) => {
    const text = d.toString();
    stdout += text;
    if (!onLine) return;
    const t = (performance.now() - t0) / 1000;
    const lines = (partial + text).split('\n');
    partial = lines.pop()!;
    for (const line of lines) onLine(line, t);
  });
  child.stderr.on('data', (d: Buffer) => {
    if (stderr.length < 1 << 20) stderr += d.toString();
  });
  let peak = 0;
  let cpu = 0;
  const pid = child.pid;
  const poll = (): void => {
    if (pid === undefined) return;
    const hwm = procStatusKiB(pid, 'VmHWM');
    if (hwm !== undefined) peak = Math.max(peak, hwm);
    const c = procCpuSeconds(pid);
    if (c !== undefined && hwm !== undefined) cpu = c;
  };
  poll();
  const timer = setInterval(poll, POLL_MS);
  const kill = (): void => void child.kill('SIGTERM');
  signal.addEventListener('abort', kill, { once: true });
  try {
    const [code, sig, seconds] = await new Promise<[number | null, NodeJS.Signals | null, number]>((res, rej) => {
      child.once('error', rej);
      child.once('exit', (c, s) => res([c, s, (performance.now() - t0) / 1000]));
    });
    // stdout may still hold the last bytes: wait for the pipes to close.
    if (child.stdout.readable || child.stderr.readable) await new Promise((res) => child.once('close', res));
    if (onLine && partial) onLine(partial, (performance.now() - t0) / 1000);
    return { code, signal: sig, seconds, peakRssKiB: peak, cpuSeconds: cpu, stdout, stderr };
  } finally {
    clearInterval(timer);
    signal.removeEventListener('abort', kill);
    running.delete(child);
  }
}

export function failure(what: string, m: Measured): Error {
  const tail = m.stderr.trim().split('\n').slice(-10).join('\n');
  return new Error(`${what} exited ${m.code ?? m.signal}${tail ? `:\n${tail}` : ''}`);
}

/** utime+stime of a process's finished (waited-for) children, in seconds. */
export function procChildrenCpuSeconds(pid: number): number | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[13]) + Number(rest[14])) / CLK_TCK;
  } catch {
    return undefined;
  }
}

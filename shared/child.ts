import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { KburError, errorMessage, type ErrorCode } from './errors.js';

const execFileAsync = promisify(execFile);

/** The environment of a tool kbur runs: PATH and a neutral locale, plus what the caller names; nothing inherited. */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', ...extra };
}

export interface RunToolOptions {
  /** Without it the child inherits kbur's environment; childEnv() gives it nothing inherited. */
  env?: NodeJS.ProcessEnv;
  timeout?: number;
  maxBuffer?: number;
  signal?: AbortSignal;
  /** How a failure is reported: its code (INTERNAL), what failed (`<file> <first argument> failed`), a hint, how many stderr lines (3). */
  failure?: { code?: ErrorCode; what?: string; hint?: string; lines?: number };
}

/**
 * Runs `file` with `args` (an argument array, no shell) and returns what it wrote. A failure (exit
 * code, signal, timeout, not found) becomes a KburError "<what failed>: <its stderr's last lines>";
 * an abort through `signal` throws the signal's reason instead, as an interruption is no failure.
 */
export async function runTool(file: string, args: string[], opts: RunToolOptions = {}): Promise<{ stdout: string; stderr: string }> {
  const { failure = {}, ...exec } = opts;
  try {
    return await execFileAsync(file, args, { ...exec, encoding: 'utf8' });
  } catch (err) {
    if (opts.signal?.aborted) throw opts.signal.reason;
    const what = failure.what ?? `${[file, ...args.slice(0, 1)].join(' ')} failed`;
    throw new KburError(failure.code ?? 'INTERNAL', `${what}: ${stderrOf(err, failure.lines)}`, { cause: err, hint: failure.hint });
  }
}

/** The last lines of a failed child's stderr, on one line; its error message when it wrote nothing. */
export function stderrOf(err: unknown, lines = 3): string {
  return lastLines(String((err as { stderr?: unknown }).stderr ?? ''), lines) || errorMessage(err);
}

/** The last `lines` non-empty lines of a tool's output, joined on one line for a message. */
export function lastLines(text: string, lines = 3): string {
  return text.trim().split('\n').filter(Boolean).slice(-lines).join(' | ');
}

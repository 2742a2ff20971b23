import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { NODE_FLAGS } from '../../shared/node-flags.js';

export const KBUR_BIN = fileURLToPath(new URL('../../coordinator/kbur.cjs', import.meta.url));

export interface KburRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Starts the real kbur CLI as a child process, as an operator or a timer would (`command`: another kbur, e.g. the installed one). */
export function spawnKbur(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  command: string[] = [process.execPath, ...NODE_FLAGS, KBUR_BIN],
): { child: ChildProcess; done: Promise<KburRun> } {
  const [file, ...before] = command;
  const child = spawn(file!, [...before, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<KburRun>((resolve) =>
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr })),
  );
  return { child, done };
}

export function runKbur(args: string[], env: NodeJS.ProcessEnv = {}): Promise<KburRun> {
  return spawnKbur(args, env).done;
}

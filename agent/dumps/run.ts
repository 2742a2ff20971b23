import { spawn, type ChildProcess } from 'node:child_process';
import { PassThrough, Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { create } from 'tar';
import type { RunDumpResponse } from '../../proto/gen/kbur/v1/agent.js';
import { lastLines } from '../../shared/child.js';
import { KburError } from '../../shared/errors.js';
import { StreamDigest, rechunk } from '../../shared/streams.js';
import { planDump, type DumpPart, type DumpPlan } from './commands.js';
import type { DumpProfile } from './profiles.js';

const MESSAGE_SIZE = 256 << 10;
const STDERR_TAIL = 4096;
const KILL_GRACE_MS = 10_000;

/** A profile of this node's config, by name; a name the config does not define is refused. */
export function profileNamed(profiles: Record<string, DumpProfile>, name: string, node: string): DumpProfile {
  const profile = Object.hasOwn(profiles, name) ? profiles[name] : undefined;
  if (!profile) {
    const known = Object.keys(profiles);
    throw new KburError(
      'NOT_FOUND',
      `node ${node} defines no dump profile "${name}"${known.length ? ` (it has: ${known.join(', ')})` : ' (it has none)'}`,
      {
        hint: `define "${name}" under dumps in the agent config of ${node}, or fix kbur.yaml`,
      },
    );
  }
  return profile;
}

/** The RunDump stream: for every part of the profile a header, its bytes (compressed as planned), a trailer. */
export async function* runDumpMessages(profile: DumpProfile, signal: AbortSignal): AsyncGenerator<RunDumpResponse> {
  const plan = await planDump(profile);
  for (const part of plan.parts) {
    yield {
      kind: {
        $case: 'part',
        value: {
          name: part.name,
          type: profile.type,
          extension: part.extension,
          compression: part.compression,
          tool: plan.tool,
          toolVersion: plan.toolVersion,
          command: (part.argv ?? ['tar', '-c', ...(part.paths ?? [])]).join(' '),
        },
      },
    };
    const started = Date.now();
    const dump = startPart(plan, part, profile.timeout, signal);
    const digest = new StreamDigest();
    try {
      for await (const chunk of rechunk(dump.output, MESSAGE_SIZE)) {
        digest.update(chunk);
        yield { kind: { $case: 'data', value: chunk } };
      }
      await dump.done;
    } finally {
      dump.stop();
    }
    yield {
      kind: {
        $case: 'partEnd',
        value: {
          size: digest.size,
          sha256: digest.sha256(),
          rawBytes: dump.rawBytes(),
          durationMs: Date.now() - started,
          stderrTail: dump.stderrTail(),
        },
      },
    };
  }
}

export interface RunningPart {
  /** What the tool wrote, compressed as planned. */
  output: Readable;
  /** Resolves when the tool exited 0 having written something; rejects with the reason otherwise. */
  done: Promise<void>;
  rawBytes(): number;
  stderrTail(): string;
  stop(): void;
}

/** Starts one part's dump. Past `timeoutSec` the tool is killed (TERM, then KILL) and the part fails. */
export function startPart(plan: DumpPlan, part: DumpPart, timeoutSec: number, signal: AbortSignal): RunningPart {
  if (!part.argv) return archivePart(part, signal);
  const [cmd, ...args] = part.argv;
  const child = spawn(cmd!, args, { env: plan.env, stdio: ['ignore', 'pipe', 'pipe'] });
  return watchChild(child, `${part.argv[0]} (${part.name})`, { compression: part.compression, timeoutSec, signal, requireOutput: true });
}

/** Turns a child's exit, signal, silence (when output is required) and stderr into one verdict. */
export function watchChild(
  child: ChildProcess,
  what: string,
  opts: { compression: 'gzip' | 'none'; timeoutSec: number; signal: AbortSignal; requireOutput: boolean },
): RunningPart {
  const { compression, timeoutSec, signal } = opts;
  let raw = 0;
  let stderr = '';
  let timedOut = false;
  child.stdout!.on('data', (d: Buffer) => (raw += d.length));
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-STDERR_TAIL)));
  const kill = (): void => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    setTimeout(() => child.exitCode === null && child.signalCode === null && child.kill('SIGKILL'), KILL_GRACE_MS).unref();
  };
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, timeoutSec * 1000);
  signal.addEventListener('abort', kill, { once: true });
  const exited = new Promise<{ code: number | null; sig: NodeJS.Signals | null; error?: Error }>((resolve) => {
    child.once('error', (error) => resolve({ code: null, sig: null, error }));
    child.once('close', (code, sig) => resolve({ code, sig }));
  });
  const done = exited.then(({ code, sig, error }) => {
    clearTimeout(timer);
    signal.removeEventListener('abort', kill);
    const tail = lastLines(stderr, 2);
    if (error) throw new KburError('FAILED_PRECONDITION', `${what} could not start: ${error.message}`, { cause: error });
    if (timedOut)
      throw new KburError('UNAVAILABLE', `${what} timed out after ${timeoutSec} s and was killed`, {
        hint: "raise the profile's timeout, or find out why the dump is slow",
      });
    if (sig) throw new KburError('UNAVAILABLE', `${what} was killed by ${sig}${tail ? `: ${tail}` : ''}`);
    if (code !== 0)
      throw new KburError('FAILED_PRECONDITION', `${what} exited ${code}${tail ? `: ${tail}` : ''}`, {
        hint: "read the tool's error above; check the server and the credentials file",
      });
    if (raw === 0 && opts.requireOutput)
      throw new KburError('FAILED_PRECONDITION', `${what} exited 0 but wrote nothing`, {
        hint: 'an empty dump is never taken as a good one; check the profile',
      });
  });
  // Always through a pipe: the byte counter above reads stdout too, and nothing may flow past the reader.
  const output = child.stdout!.pipe(compression === 'gzip' ? createGzip({ level: 6 }) : new PassThrough());
  // The verdict needs the exit status as well as the end of stdout: the reader awaits `done`.
  done.catch(() => undefined);
  return { output, done, rawBytes: () => raw, stderrTail: () => stderr, stop: kill };
}

/** `files`: kbur archives the paths itself (modes, owners, mtimes kept), relative to /. */
function archivePart(part: DumpPart, signal: AbortSignal): RunningPart {
  let raw = 0;
  const pack = create({ cwd: '/', portable: false, gzip: false, strict: true }, part.paths ?? []);
  const tar = Readable.from(pack, { objectMode: false, signal });
  tar.on('data', (d: Buffer) => (raw += d.length));
  const output = tar.pipe(createGzip({ level: 6 }));
  const done = new Promise<void>((resolve, reject) => {
    tar.once('end', () => resolve());
    tar.once('error', (err) =>
      reject(
        new KburError('FAILED_PRECONDITION', `archiving ${part.paths?.map((p) => `/${p}`).join(', ')} failed: ${err.message}`, {
          cause: err,
        }),
      ),
    );
  });
  done.catch(() => undefined);
  return { output, done, rawBytes: () => raw, stderrTail: () => '', stop: () => tar.destroy() };
}

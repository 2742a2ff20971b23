// A stand-in for systemctl, for tests of etcd run as a systemd unit (the agent's etcd.unit): a
// small script that really starts and stops a unit's command, keeping its pid, as systemd would.
// Put its folder first on the agent's PATH.
import { execFile } from 'node:child_process';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface SystemctlStandIn {
  /** The folder holding `systemctl`. */
  binDir: string;
  /** Defines `unit` as running `argv` (argv[0] found on PATH). */
  defineUnit(unit: string, argv: string[]): Promise<void>;
  /** Runs the stand-in as the agent would: `systemctl start|stop|is-active UNIT`. */
  systemctl(verb: 'start' | 'stop' | 'is-active', unit: string): Promise<string>;
  /** The pid of the unit's process, if it runs. */
  pid(unit: string): Promise<number | undefined>;
}

/**
 * start: runs UNITS/UNIT.run in its own session (a process that is already running is left alone);
 * stop: SIGTERM, then waits for the exit (SIGKILL after 30 s), as `systemctl stop` waits for the unit.
 * A zombie counts as stopped: nothing here reaps the processes it started.
 */
const SCRIPT = (units: string): string => `#!/bin/sh
set -eu
units='${units}'
verb="$1"
unit="$2"
pidfile="$units/$unit.pid"
running() {
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -d "/proc/$pid" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null
}
case "$verb" in
  start)
    if running; then exit 0; fi
    if [ ! -f "$units/$unit.run" ]; then echo "Unit $unit not found." >&2; exit 5; fi
    setsid sh "$units/$unit.run" >>"$units/$unit.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    ;;
  stop)
    if running; then
      kill -TERM "$pid"
      i=0
      while running; do
        i=$((i + 1))
        if [ "$i" -eq 300 ]; then kill -KILL "$pid"; fi
        sleep 0.1
      done
    fi
    rm -f "$pidfile"
    ;;
  is-active)
    if running; then echo active; else echo inactive; exit 3; fi
    ;;
  *)
    echo "systemctl stand-in: unknown verb $verb" >&2
    exit 1
    ;;
esac
`;

function shellQuote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

export async function installSystemctlStandIn(dir: string): Promise<SystemctlStandIn> {
  const binDir = join(dir, 'bin');
  const units = join(dir, 'units');
  await mkdir(binDir, { recursive: true });
  await mkdir(units, { recursive: true });
  const bin = join(binDir, 'systemctl');
  await writeFile(bin, SCRIPT(units));
  await chmod(bin, 0o755);
  return {
    binDir,
    defineUnit: (unit, argv) => writeFile(join(units, `${unit}.run`), `exec ${argv.map(shellQuote).join(' ')}\n`),
    systemctl: async (verb, unit) => (await run(bin, [verb, unit], { timeout: 60_000 })).stdout.trim(),
    pid: async (unit) => {
      const active = await run(bin, ['is-active', unit]).then(
        () => true,
        () => false,
      );
      return active ? Number(await readFile(join(units, `${unit}.pid`), 'utf8')) : undefined;
    },
  };
}

/**
 * Output to a closed pipe (`kbur restore ... | head`) is dropped instead of killing the process:
 * a restore must not stop half-way because its reader went away; its journal keeps the record.
 */
export function survivePipeClose(): void {
  for (const out of [process.stdout, process.stderr]) {
    out.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
    });
  }
}

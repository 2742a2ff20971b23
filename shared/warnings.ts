/**
 * grpc-js puts the target host in TLS SNI even when it is an IP address, and Node warns about it
 * on every connection (DEP0123). The certificate is still checked against that IP; the warning
 * tells an operator nothing, so the binaries drop this one and print every other warning as Node does.
 */
export function dropIpServernameWarning(): void {
  process.removeAllListeners('warning');
  process.on('warning', (w: Error & { code?: string }) => {
    if (w.code !== 'DEP0123') process.stderr.write(`(node:${process.pid}) ${w.name}: ${w.message}\n`);
  });
}

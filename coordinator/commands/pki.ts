import type { ListedCert, PkiRequest } from '../pki.js';
import { ExitCode } from '../exit-codes.js';

export type PkiOptions = { json?: boolean; out?: NodeJS.WritableStream } & (PkiRequest | { action: 'list'; dir: string });

/** kbur pki init | agent | client | list: kbur's own CA and the certificates it signs. */
export async function run(opts: PkiOptions): Promise<ExitCode> {
  // Loaded here: the X.509 code is a tenth of the bundle and no other command needs it.
  const pki = await import('../pki.js');
  const { json, out = process.stdout, ...request } = opts;
  if (request.action === 'list') {
    const certs = await pki.listIssued(request.dir);
    out.write(json ? JSON.stringify(certs, null, 2) + '\n' : table(certs));
    return ExitCode.OK;
  }
  const issued = await pki.runPki(request);
  if (json) {
    out.write(JSON.stringify({ cert: issued.cert, key: issued.key, ...issued.info }, null, 2) + '\n');
    return ExitCode.OK;
  }
  out.write(`wrote ${issued.cert}\n      ${issued.key} (0600)\n`);
  out.write(`CN ${issued.info.cn}, ${issued.info.keyType}, valid until ${issued.info.notAfter.toISOString()}\n`);
  const dir = request.dir;
  if (request.action === 'init') {
    out.write(`next: kbur pki agent NODE --ip IP --dir ${dir} for every master, kbur pki client kbur-admin --dir ${dir}\n`);
    out.write('keep ca.key on this host only: whoever holds it can make certificates every agent trusts\n');
  } else if (request.action === 'agent') {
    out.write(
      `next: copy ${dir}/ca.crt, ${issued.cert} and ${issued.key} to ${request.node} as /etc/kbur/pki/ca.crt, agent.crt and agent.key (0600),\n` +
        '      the paths /etc/kbur/agent.yaml names under tls\n',
    );
  } else {
    out.write(`next: on every master, add "${issued.info.cn}: ${request.role ?? 'admin'}" under clients in /etc/kbur/agent.yaml\n`);
  }
  return ExitCode.OK;
}

function table(certs: ListedCert[]): string {
  const rows = [['FILE', 'CN', 'KIND', 'NAMES', 'KEY', 'EXPIRES', 'DAYS LEFT']];
  for (const c of certs) {
    const kind = c.isCA ? 'CA' : c.usages.join('+') || '-';
    rows.push([
      c.file,
      c.cn,
      kind,
      [...c.ips, ...c.dns].join(',') || '-',
      c.keyType,
      c.notAfter.toISOString().slice(0, 10),
      String(c.daysLeft),
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return (
    rows
      .map((r) =>
        r
          .map((c, i) => c.padEnd(widths[i]!))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

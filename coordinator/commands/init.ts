import { join, resolve } from 'node:path';
import { configFileFrom, type GlobalOptions } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { initConfig } from '../init.js';

export interface InitOptions extends GlobalOptions {
  agent: string;
  output?: string;
  cluster: string;
  repository: string;
  pki: string;
  client: string;
  out?: NodeJS.WritableStream;
}

/** kbur init --agent HOST:PORT: writes kbur.yaml from one agent's etcd member list. */
export async function run(opts: InitOptions): Promise<ExitCode> {
  const out = opts.out ?? process.stdout;
  const output = resolve(opts.output ?? configFileFrom(opts));
  // Absolute: the config resolves relative paths against its own folder, not the current one.
  const pki = resolve(opts.pki);
  const tls = { ca: join(pki, 'ca.crt'), cert: join(pki, `${opts.client}.crt`), key: join(pki, `${opts.client}.key`) };
  const nodes = await initConfig({ agent: opts.agent, output, cluster: opts.cluster, repository: resolve(opts.repository), tls });
  if (opts.json) {
    out.write(JSON.stringify({ config: output, nodes }, null, 2) + '\n');
    return ExitCode.OK;
  }
  out.write(`wrote ${output} with ${nodes.length} node(s):\n`);
  for (const n of nodes) out.write(`  ${n.name}  ${n.agent}${n.unconfirmed ? `  (not confirmed: ${n.unconfirmed})` : ''}\n`);
  out.write(`next: kbur --config ${output} backup\n`);
  return ExitCode.OK;
}

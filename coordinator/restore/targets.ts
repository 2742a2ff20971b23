import { isIP } from 'node:net';
import { z } from 'zod';
import { loadConfigFile } from '../../shared/config-file.js';
import { hostPortSchema } from '../../shared/schemas.js';

const schema = z.strictObject({
  /** One entry per node of the backup that moves: where its control plane comes back. */
  nodes: z
    .array(
      z.strictObject({
        /** The node's name in the backup (its archive, its etcd member). */
        from: z.string().min(1),
        /** The name its new agent answers as; default: the same. */
        name: z.string().min(1).optional(),
        /** Its new address: it replaces the old one in etcd's URLs, certificates and configs. */
        address: z.string().refine((a) => isIP(a) !== 0, { message: 'expected an IP address, e.g. 10.0.1.11' }),
        /** Its new agent, host:port. */
        agent: hostPortSchema('10.0.1.11:7443'),
      }),
    )
    .min(1, { message: 'expected at least one node' })
    .refine((n) => new Set(n.map((x) => x.from)).size === n.length, { message: 'each node of the backup may appear once' }),
});

export interface Target {
  from: string;
  name: string;
  address: string;
  agent: string;
}

/** kbur restore --to FILE: the new name, address and agent of each node of the backup. */
export async function loadTargets(file: string): Promise<Target[]> {
  const parsed = await loadConfigFile(file, schema, '--to file');
  return parsed.nodes.map((n) => ({ ...n, name: n.name ?? n.from }));
}

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { waitForEtcdHealthy, type Sandbox } from '../sandbox/cluster.js';

/** An etcd3 client on the sandbox's members, with node-1's healthcheck-client cert. */
export async function etcdClient(sandbox: Sandbox): Promise<Etcd3> {
  const pki = join(sandbox.nodes[0]!.kubernetesDir, 'pki', 'etcd');
  const [ca, cert, key] = await Promise.all(
    ['ca.crt', 'healthcheck-client.crt', 'healthcheck-client.key'].map((f) => readFile(join(pki, f))),
  );
  return new Etcd3({
    hosts: sandbox.nodes.map((n) => n.clientUrl),
    credentials: { rootCertificate: ca!, certChain: cert!, privateKey: key! },
    grpcOptions: { 'grpc.ssl_target_name_override': 'localhost' },
  });
}

/** After a restore: once every member answers, a client in place of `old`, whose connections were to the members that were stopped. */
export async function clientAfterRestore(sandbox: Sandbox, old: Etcd3): Promise<Etcd3> {
  await waitForEtcdHealthy(sandbox);
  old.close();
  return etcdClient(sandbox);
}

/** Writes `count` values of `size` bytes under `prefix` (etcd refuses requests over 1.5 MiB). */
export async function putBulk(client: Etcd3, prefix: string, count: number, size = 1 << 20): Promise<void> {
  const value = Buffer.alloc(size, 'x');
  for (let i = 0; i < count; i++) await client.put(`${prefix}${String(i).padStart(6, '0')}`).value(value);
}

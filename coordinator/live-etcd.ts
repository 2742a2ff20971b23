import type { Etcd3 } from 'etcd3';
import { KburError, errorMessage } from '../shared/errors.js';
import { readTlsFiles } from '../shared/tls.js';
import type { CoordinatorConfig } from './config.js';
import { etcd3 } from './etcd3.js';

/**
 * A client of the cluster's running etcd, from kbur.yaml's `etcd:` section; checked to answer.
 * restore --namespace and diff read and write it directly, as etcdctl would.
 */
export async function connectLiveEtcd(config: CoordinatorConfig, what: string): Promise<Etcd3> {
  if (!config.etcd) {
    throw new KburError('INVALID_CONFIG', `${what} reads the cluster's etcd, and kbur.yaml has no etcd: section`, {
      hint: "add etcd: {endpoints: [https://10.0.0.11:2379, ...], ca: ..., cert: ..., key: ...} with a client certificate the cluster's etcd accepts (kubeadm: /etc/kubernetes/pki/apiserver-etcd-client.crt/.key, ca /etc/kubernetes/pki/etcd/ca.crt)",
    });
  }
  const tls = await readTlsFiles(config.etcd, 'kbur config etcd');
  const { Etcd3 } = etcd3();
  const client = new Etcd3({
    hosts: config.etcd.endpoints,
    credentials: { rootCertificate: tls.ca, certChain: tls.cert, privateKey: tls.key },
    dialTimeout: 10_000,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 30_000 }),
    grpcOptions: { 'grpc.max_receive_message_length': 64 << 20 },
  });
  try {
    await client.maintenance.status();
  } catch (err) {
    client.close();
    throw new KburError('UNAVAILABLE', `the cluster's etcd (${config.etcd.endpoints.join(', ')}) does not answer: ${errorMessage(err)}`, {
      cause: err,
      hint: 'check etcd.endpoints and the client certificate in kbur.yaml',
    });
  }
  return client;
}

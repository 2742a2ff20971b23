import type { RestorePlan } from '../../coordinator/restore/plan.js';

/** A restore plan of no node, for tests of what carries plans (the journal); add nodes as needed. */
export const EMPTY_PLAN: RestorePlan = {
  restoreId: '20261126T030000Z-abcd',
  backupId: '20261126T020000Z-0123',
  cluster: 'demo',
  token: 'kbur-20261126T030000Z-abcd',
  initialCluster: 'node-1=https://10.0.0.11:2380',
  bumpRevision: 0,
  withKubernetesDir: false,
  snapshot: { path: 'etcd/snapshot.db', size: 1, sha256: 'ab', revision: 1, keyCount: 1 },
  nodes: [],
  notes: [],
  leftOut: [],
  readdress: [],
};

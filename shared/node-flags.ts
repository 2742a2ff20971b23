/**
 * How kbur's binaries run node (their shebang says the same): a small young generation keeps the
 * heap from growing with the garbage that streaming gigabytes leaves behind, so memory stays flat.
 */
export const NODE_FLAGS = ['--max-semi-space-size=2'];

/**
 * The agent's, as its shebang says: NODE_FLAGS, no memory reducer and no incremental marking:
 * otherwise streaming through its small, mostly idle heap (~20 MiB) sets off full mark-compacts,
 * at the price of a rare ~30 ms pause the flow-control windows absorb. Figure: 1.0-1.3 CPU-s per
 * 300 MiB snapshot instead of 1.4-2.2; a restore's uploading agents 3.5 CPU-s instead of 7.0.
 */
export const AGENT_NODE_FLAGS = [...NODE_FLAGS, '--no-memory-reducer', '--no-incremental-marking'];

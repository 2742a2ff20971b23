/**
 * How kbur's binaries run node (their shebang says the same): a small young generation keeps the
 * heap from growing with the garbage that streaming gigabytes leaves behind, so memory stays flat.
 */
export const NODE_FLAGS = ['--max-semi-space-size=2'];

/**
 * The agent's, as its shebang says: NODE_FLAGS, no memory reducer and no incremental marking.
 * - An agent idle for half a minute had V8's memory reducer shrink its heap, and from then on
 *   every 64 MiB of buffers a snapshot passes through started a full mark-compact: twice the CPU
 *   per backup, for good (seen as 2.2 CPU-s instead of 1.0 for 300 MiB).
 * - A snapshot's first seconds on a fresh agent, and after minutes idle, still set off 5 to 26
 *   incremental mark-compacts, started by V8's soft limit with a third of the old generation still
 *   free: 1.4-1.9 CPU-s for 300 MiB instead of 1.0. Without incremental marking V8 collects the
 *   old generation only when it reaches its limit: 0 or 1 mark-compacts and 1.1-1.3 CPU-s, the
 *   same peak RSS (~115-122 MiB in the benchmark). The price: a full collection, now rare, pauses
 *   the agent at once instead of in steps (~30 ms for a 30 MiB heap here), which the streams'
 *   flow-control windows absorb.
 * Its heap is ~20 MiB; keeping it is cheap.
 */
export const AGENT_NODE_FLAGS = [...NODE_FLAGS, '--no-memory-reducer', '--no-incremental-marking'];

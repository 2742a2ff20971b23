import { PassThrough, type Readable } from 'node:stream';

/**
 * One read of `source` for several nodes at once: each node gets its own branch. Node's pipe()
 * paces the source to the slowest branch; a branch is detached as soon as its node is done or
 * failed, so one failed node never holds the others back.
 */
export class FanOut {
  private readonly branches = new Map<string, PassThrough>();

  constructor(
    private readonly source: Readable,
    nodes: string[],
  ) {
    for (const node of nodes) {
      const branch = new PassThrough({ highWaterMark: 1 << 20 });
      // A node not reading yet gets a failure when it reads (stream.errored), not as an uncaught event.
      branch.on('error', () => undefined);
      this.branches.set(node, source.pipe(branch));
    }
    // pipe() does not pass a source's failure on: without this a branch would wait for more bytes.
    source.on('error', (err) => {
      for (const branch of this.branches.values()) branch.destroy(err);
    });
  }

  async send<T>(node: string, send: (data: Readable) => Promise<T>): Promise<T> {
    const branch = this.branches.get(node);
    if (!branch) throw new Error(`FanOut: no branch for ${node}`);
    try {
      return await send(branch);
    } finally {
      this.source.unpipe(branch);
      branch.destroy();
    }
  }

  close(): void {
    this.source.destroy();
  }
}

/** A one-line progress display on a terminal; silent when stderr is not a TTY. */
export class Progress {
  private bytes = 0;
  private total = 0;
  private source = '';
  private archives = { done: 0, of: 0 };
  private readonly started = Date.now();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly out: NodeJS.WriteStream | undefined) {
    if (out?.isTTY) this.timer = setInterval(() => this.draw(), 500);
  }

  snapshotFrom(node: string, expectedBytes: number): void {
    this.source = node;
    this.total = expectedBytes;
    this.bytes = 0;
  }

  add(n: number): void {
    this.bytes += n;
  }

  archivesExpected(n: number): void {
    this.archives.of = n;
  }

  archiveDone(): void {
    this.archives.done++;
  }

  stop(): void {
    if (!this.timer) return;
    clearInterval(this.timer);
    this.out?.write('\r\x1b[K');
  }

  private draw(): void {
    const secs = (Date.now() - this.started) / 1000;
    const rate = this.bytes / Math.max(secs, 0.001);
    const eta = this.total > this.bytes && rate > 0 ? `, ETA ${Math.ceil((this.total - this.bytes) / rate)}s` : '';
    const of = this.total ? ` / ~${mib(this.total)}` : '';
    this.out?.write(
      `\r\x1b[Ketcd snapshot${this.source ? ` from ${this.source}` : ''}: ${mib(this.bytes)}${of}, ${mib(rate)}/s${eta} | kubernetes dirs ${this.archives.done}/${this.archives.of}`,
    );
  }
}

export function mib(n: number): string {
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

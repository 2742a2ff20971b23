// Hand-made tar streams for tests that send an agent archives no honest tar tool writes: absolute
// paths, `..`, links out, devices, fifos, oversized headers. ustar headers, byte by byte.

export type TarType = 'file' | 'hardlink' | 'symlink' | 'chardev' | 'blockdev' | 'dir' | 'fifo' | 'pax';

const TYPE_FLAG: Record<TarType, string> = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  chardev: '3',
  blockdev: '4',
  dir: '5',
  fifo: '6',
  pax: 'x',
};

export interface TarEntry {
  path: string;
  type?: TarType;
  linkpath?: string;
  body?: Buffer | string;
  /** The size the header claims; default the body's length. */
  claimedSize?: number;
  mode?: number;
}

const BLOCK = 512;

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

/** One ustar header block. Names longer than 100 bytes are cut: use a pax entry for those. */
export function tarHeader(e: TarEntry): Buffer {
  const h = Buffer.alloc(BLOCK);
  const type = e.type ?? 'file';
  const size = e.claimedSize ?? Buffer.byteLength(e.body ?? '');
  h.write(e.path.slice(0, 100), 0, 'utf8');
  h.write(octal(e.mode ?? (type === 'dir' ? 0o755 : 0o644), 8), 100);
  h.write(octal(0, 8), 108);
  h.write(octal(0, 8), 116);
  h.write(octal(size, 12), 124);
  h.write(octal(Math.floor(Date.now() / 1000), 12), 136);
  h.write(TYPE_FLAG[type], 156);
  if (e.linkpath) h.write(e.linkpath.slice(0, 100), 157, 'utf8');
  h.write('ustar\0', 257);
  h.write('00', 263);
  h.write(octal(0, 8), 329);
  h.write(octal(0, 8), 337);
  h.fill(' ', 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + ' ', 148);
  return h;
}

function padded(body: Buffer): Buffer {
  const rest = body.length % BLOCK;
  return rest ? Buffer.concat([body, Buffer.alloc(BLOCK - rest)]) : body;
}

/** The entries, each header then its body padded to 512 bytes; without the end-of-archive blocks. */
export function tarEntries(entries: TarEntry[]): Buffer {
  return Buffer.concat(entries.flatMap((e) => [tarHeader(e), padded(Buffer.from(e.body ?? ''))]));
}

/** A whole archive: the entries and the two zero blocks that end it. */
export function tarArchive(entries: TarEntry[]): Buffer {
  return Buffer.concat([tarEntries(entries), Buffer.alloc(2 * BLOCK)]);
}

/** A pax extended header (type x) that sets `key` for the entry after it: e.g. a path longer than ustar allows. */
export function paxEntry(records: Record<string, string>): TarEntry {
  const body = Object.entries(records)
    .map(([k, v]) => {
      const text = ` ${k}=${v}\n`;
      const base = Buffer.byteLength(text);
      // The record's length counts its own digits.
      let len = base + 1;
      while (len !== base + String(len).length) len = base + String(len).length;
      return `${len}${text}`;
    })
    .join('');
  return { path: 'PaxHeader', type: 'pax', body };
}

/** `tar` (uncompressed) with `entries` added before its end: its own entries are kept as they are. */
export function appendToTar(tar: Buffer, entries: TarEntry[]): Buffer {
  let offset = 0;
  while (offset + BLOCK <= tar.length) {
    const header = tar.subarray(offset, offset + BLOCK);
    if (header.every((b) => b === 0)) break;
    const size = parseInt(header.subarray(124, 136).toString('latin1').replace(/\0.*$/s, '').trim() || '0', 8);
    offset += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
  }
  return Buffer.concat([tar.subarray(0, offset), tarArchive(entries)]);
}

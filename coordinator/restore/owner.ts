/**
 * Whether a stored Kubernetes object has ownerReferences: 'yes', 'no', or 'unknown' when its
 * value cannot be read (encrypted at rest, another encoding, damaged). Callers treat 'unknown' as
 * owned: leaving a pod out is safe (its owner recreates it), bringing back a stale one is not.
 *
 * The apiserver stores JSON, or protobuf behind the 4-byte magic "k8s\0": a runtime.Unknown whose
 * field 2 (raw) is the object, whose field 1 is its ObjectMeta, whose field 13 is ownerReferences
 * (k8s.io/apimachinery generated.proto). Only those three levels are walked; field numbers are
 * stable by protobuf's rules.
 */
export function hasOwnerReferences(value: Buffer): 'yes' | 'no' | 'unknown' {
  try {
    if (value.subarray(0, 4).equals(K8S_MAGIC)) {
      const raw = field(value.subarray(4), 2);
      const meta = raw && field(raw, 1);
      if (!meta) return 'unknown';
      return field(meta, 13) ? 'yes' : 'no';
    }
    const obj = JSON.parse(value.toString('utf8')) as { metadata?: { ownerReferences?: unknown } };
    if (typeof obj !== 'object' || obj === null || typeof obj.metadata !== 'object') return 'unknown';
    const refs = obj.metadata.ownerReferences;
    return Array.isArray(refs) && refs.length > 0 ? 'yes' : 'no';
  } catch {
    return 'unknown';
  }
}

const K8S_MAGIC = Buffer.from('k8s\0', 'latin1');

/** The first length-delimited field `want` of a protobuf message; throws on a malformed one. */
function field(msg: Buffer, want: number): Buffer | undefined {
  let at = 0;
  const varint = (): number => {
    let n = 0;
    for (let shift = 0; ; shift += 7) {
      if (at >= msg.length || shift > 49) throw new Error('bad varint');
      const b = msg[at++]!;
      n += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return n;
    }
  };
  while (at < msg.length) {
    const tag = varint();
    const num = Math.floor(tag / 8);
    const wire = tag & 7;
    if (wire === 0) varint();
    else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else if (wire === 2) {
      const len = varint();
      if (at + len > msg.length) throw new Error('field past the end');
      if (num === want) return msg.subarray(at, at + len);
      at += len;
    } else throw new Error(`wire type ${wire}`);
  }
  if (at > msg.length) throw new Error('field past the end');
  return undefined;
}

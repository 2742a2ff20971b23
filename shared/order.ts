/**
 * Orders strings by UTF-16 code units: the same order on every machine, for node names, backup ids,
 * timestamps and paths. Not localeCompare, which orders by the process's locale and whose first
 * call loads ICU's collation data: ~7 ms that every backup spent choosing its snapshot member,
 * between the nodes' answers and the snapshot call.
 */
export function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

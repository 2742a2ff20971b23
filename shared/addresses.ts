/**
 * The text with every IPv4 address of `changes` that stands alone (not inside a longer address
 * or number) replaced by its new one, in one pass, so that one change never feeds another.
 * `found` gets the old addresses the text named.
 */
export function replaceAddresses(text: string, changes: Map<string, string>, found?: Set<string>): string {
  if (changes.size === 0) return text;
  const any = [...changes.keys()].map((a) => a.replace(/[.]/g, '\\.')).join('|');
  return text.replace(new RegExp(`(?<![\\d.])(?:${any})(?!\\d|\\.\\d)`, 'g'), (old) => {
    found?.add(old);
    return changes.get(old)!;
  });
}

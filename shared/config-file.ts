import { readFile } from 'node:fs/promises';
import { LineCounter, parseDocument, isNode } from 'yaml';
import type { z } from 'zod';
import { KburError } from './errors.js';

/**
 * Reads a YAML config file and validates it against a schema. Every failure is one
 * INVALID_CONFIG KburError naming the file, the line, the key and what was expected.
 */
export async function loadConfigFile<S extends z.ZodType>(file: string, schema: S, what: string): Promise<z.output<S>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable' : `cannot be read (${code})`;
    throw new KburError('INVALID_CONFIG', `${what} ${file} ${reason}`, {
      cause: err,
      hint: `create it (see README "Configuration") or point to another file with --config`,
    });
  }
  return parseConfigText(text, file, schema);
}

export function parseConfigText<S extends z.ZodType>(text: string, file: string, schema: S): z.output<S> {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true });
  const syntax = doc.errors[0];
  if (syntax) {
    const pos = syntax.linePos?.[0];
    const where = pos ? `${file}:${pos.line}:${pos.col}` : file;
    throw new KburError(
      'INVALID_CONFIG',
      `${where}: YAML syntax error: ${firstLine(syntax.message).replace(/ at line \d+, column \d+:?$/, '')}`,
      {
        hint: 'fix the YAML syntax at that line (indentation, quotes, a missing colon)',
      },
    );
  }
  const value: unknown = doc.toJS() ?? {};
  const result = schema.safeParse(value);
  if (result.success) return result.data;

  // An unknown key is often a misspelt one, which also explains a "missing" key: say it first.
  const issues = [...result.error.issues].sort((a, b) => Number(b.code === 'unrecognized_keys') - Number(a.code === 'unrecognized_keys'));
  const problems = issues.map((issue) => {
    const path = issue.path.map(String);
    if (issue.code === 'unrecognized_keys') {
      const keys = issue.keys;
      const at = keys.length > 0 ? [...path, keys[0]!] : path;
      return `${file}${lineOf(doc, lineCounter, at)}: unknown key ${keys.map((k) => `"${[...path, k].join('.')}"`).join(', ')}${path.length ? '' : ' at the top level'}`;
    }
    const key = path.length ? `"${path.join('.')}"` : 'the document';
    return `${file}${lineOf(doc, lineCounter, path)}: ${key}: ${issue.message}`;
  });
  throw new KburError('INVALID_CONFIG', problems.join('\n'), {
    hint: 'fix the key named above; every key is documented in README "Configuration"',
  });
}

function lineOf(doc: ReturnType<typeof parseDocument>, lc: LineCounter, path: string[]): string {
  for (let n = path.length; n > 0; n--) {
    const node = doc.getIn(path.slice(0, n), true);
    if (isNode(node) && node.range) return `:${lc.linePos(node.range[0]).line}`;
  }
  return '';
}

function firstLine(s: string): string {
  return s.split('\n')[0] ?? s;
}

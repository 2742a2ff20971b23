import { KburError } from './errors.js';
import { NAME_PATTERNS, NAME_RULES } from './manifest.js';

/**
 * What a member restore hands to etcdutl/etcdctl as arguments: the member's name, the new cluster's
 * membership and token. They come from the restore plan (a file of the repository) and over the
 * RestoreEtcdMember RPC, so each is checked where it enters, by this one function.
 */
export interface MemberRestoreArgs {
  name: string;
  initialCluster: string;
  initialClusterToken: string;
  initialAdvertisePeerUrls: string[];
}

const MEMBER_NAME = NAME_PATTERNS.member;
/** kbur's tokens are kbur-<restore id>; an operator's own could be longer, never an option or a list. */
const TOKEN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

const shown = (v: string): string => JSON.stringify(v).slice(0, 200);

/** Why `url` is not a peer URL etcd takes (http(s)://host:port, nothing else), or undefined. */
export function peerUrlProblem(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `${shown(url)} is not a URL`;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return `${shown(url)} is not an http or https URL`;
  if (!u.hostname || !u.port) return `${shown(url)} has no host and port`;
  if (u.username || u.password || u.search || u.hash || (u.pathname !== '/' && u.pathname !== ''))
    return `${shown(url)} has more than scheme, host and port`;
  if (/[\s,=]/.test(url)) return `${shown(url)} holds a space, comma or =`;
  return undefined;
}

/** Why these restore arguments are not a membership etcd would take, or undefined. */
export function memberRestoreProblem(a: MemberRestoreArgs): string | undefined {
  if (!MEMBER_NAME.test(a.name)) return `member name ${shown(a.name)}: expected ${NAME_RULES.member}`;
  if (!TOKEN.test(a.initialClusterToken))
    return `cluster token ${shown(a.initialClusterToken)}: expected at most 128 letters, digits, ., _ or -, starting with a letter or digit`;
  if (a.initialAdvertisePeerUrls.length === 0) return `member ${a.name}: no peer URL`;
  for (const u of a.initialAdvertisePeerUrls) {
    const p = peerUrlProblem(u);
    if (p) return `member ${a.name}'s peer URL: ${p}`;
  }
  const urlsOf = new Map<string, string[]>();
  for (const entry of a.initialCluster.split(',')) {
    const eq = entry.indexOf('=');
    const [name, url] = eq < 0 ? [entry, ''] : [entry.slice(0, eq), entry.slice(eq + 1)];
    if (!MEMBER_NAME.test(name)) return `initial cluster ${shown(a.initialCluster)}: ${shown(entry)} is not name=peer-url`;
    const p = peerUrlProblem(url);
    if (p) return `initial cluster ${shown(a.initialCluster)}: ${p}`;
    urlsOf.set(name, [...(urlsOf.get(name) ?? []), url]);
  }
  const own = urlsOf.get(a.name) ?? [];
  if (own.length !== a.initialAdvertisePeerUrls.length || a.initialAdvertisePeerUrls.some((u) => !own.includes(u)))
    return `initial cluster ${shown(a.initialCluster)} does not give member ${a.name} its peer URLs ${a.initialAdvertisePeerUrls.join(',')}`;
  return undefined;
}

/** The same, as the error an RPC answers with. */
export function checkMemberRestore(a: MemberRestoreArgs): void {
  const problem = memberRestoreProblem(a);
  if (problem)
    throw new KburError('INVALID_ARGUMENT', `member restore refused: ${problem}`, {
      hint: 'kbur restore makes these from the backup and the nodes; a plan edited by hand must keep etcd --initial-cluster syntax',
    });
}

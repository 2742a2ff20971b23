/**
 * `kbur init`: a first kbur.yaml from one running agent. The agent's etcd member list names every
 * control-plane node (an etcd member per master, as kubeadm makes them); each node's agent is
 * taken to listen on its member's peer host at the port of the agent asked. Every agent found is
 * asked for its node name, which restores check against kbur.yaml; one that does not answer gets
 * its etcd member's name (kubeadm: the hostname, the agent's default node name) and a comment.
 */
import { mkdir } from 'node:fs/promises';
import { isIP } from 'node:net';
import { dirname } from 'node:path';
import { z } from 'zod';
import { KburError, errorMessage } from '../shared/errors.js';
import { pathExists } from '../shared/path-exists.js';
import { agentAddressSchema } from '../shared/schemas.js';
import { writeFileAtomic } from '../shared/streams.js';
import { readTlsFiles, type TlsFiles } from '../shared/tls.js';
import { AgentClient } from './agent-client.js';

const safeName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, {
  message: 'expected a name of letters, digits, ".", "_" or "-" (max 63), starting with a letter or digit',
});

export const initRequestSchema = z.strictObject({
  agent: agentAddressSchema,
  output: z.string().min(1),
  cluster: safeName,
  repository: z.string().min(1),
  tls: z.strictObject({ ca: z.string().min(1), cert: z.string().min(1), key: z.string().min(1) }),
});
export type InitRequest = z.input<typeof initRequestSchema>;

export interface FoundNode {
  name: string;
  agent: string;
  /** Why the name is a guess: the agent did not answer. */
  unconfirmed?: string;
}

const ASK_DEADLINE_MS = 10_000;

/** Asks the agents, writes the config (never over an existing file), returns what it found. */
export async function initConfig(request: InitRequest): Promise<FoundNode[]> {
  const req = parse(request);
  if (await pathExists(req.output)) {
    throw new KburError('FAILED_PRECONDITION', `${req.output} already exists; kbur init never overwrites a config`, {
      hint: 'edit it, or move it away and run kbur init again, or write elsewhere with --output',
    });
  }
  const creds = AgentClient.credentials(await readTlsFiles(req.tls as TlsFiles, 'kbur init'));
  const first = new AgentClient({ name: req.agent, agent: req.agent }, creds);
  let info;
  try {
    info = await first.getNodeInfo({ countKeys: false }, ASK_DEADLINE_MS);
  } finally {
    first.close();
  }
  if (!info.etcd?.reachable || info.etcd.members.length === 0) {
    throw new KburError(
      'UNAVAILABLE',
      `the agent at ${req.agent} (node ${info.node}) cannot read its etcd member list: ${info.etcd?.error ?? 'no members'}`,
      {
        hint: "check that etcd runs on that node and that the agent's etcd settings are right (kbur-agent --print-config)",
      },
    );
  }
  const port = req.agent.slice(req.agent.lastIndexOf(':') + 1);
  const nodes = await Promise.all(
    info.etcd.members.map(async (m): Promise<FoundNode> => {
      if (m.name === info.etcd!.name) return { name: info.node, agent: req.agent };
      const host = peerHost(m.peerUrls[0] ?? '');
      if (!host) return { name: m.name, agent: `UNKNOWN:${port}`, unconfirmed: `member ${m.name} has no peer URL` };
      const agent = `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
      const client = new AgentClient({ name: m.name, agent }, creds);
      try {
        const other = await client.getNodeInfo({ countKeys: false }, ASK_DEADLINE_MS);
        return { name: other.node, agent };
      } catch (err) {
        return { name: m.name, agent, unconfirmed: errorMessage(err).split('\n')[0]! };
      } finally {
        client.close();
      }
    }),
  );
  nodes.sort((a, b) => a.name.localeCompare(b.name));
  await mkdir(dirname(req.output), { recursive: true, mode: 0o700 });
  await writeFileAtomic(req.output, render(req, nodes, info.agentVersion), { noOverwrite: true });
  return nodes;
}

function peerHost(url: string): string | undefined {
  try {
    return new URL(url).hostname.replace(/^\[|\]$/g, '') || undefined;
  } catch {
    return undefined;
  }
}

function render(req: z.output<typeof initRequestSchema>, nodes: FoundNode[], agentVersion: string): string {
  const q = (s: string): string => JSON.stringify(s);
  return [
    `# kbur.yaml, written by kbur init from the agent at ${req.agent} (kbur-agent ${agentVersion}) on ${new Date().toISOString()}.`,
    '# Every key is described in README "Configuration". Relative paths are relative to this file.',
    '',
    "# The cluster's name: backups live under <repository>/<cluster>/ (letters, digits, . _ -).",
    `cluster: ${q(req.cluster)}`,
    '',
    "# kbur's client certificate (kbur pki client NAME) and kbur's CA; the certificate's CN must map",
    "# to a role under clients in every agent's /etc/kbur/agent.yaml (admin for restores).",
    'tls:',
    `  ca: ${q(req.tls.ca)}`,
    `  cert: ${q(req.tls.cert)}`,
    `  key: ${q(req.tls.key)}`,
    '',
    "# Every control-plane node, from the etcd member list, and its agent: the member's peer host and",
    "# the port of the agent kbur init asked. The name is what that node's agent calls itself.",
    'nodes:',
    ...nodes.flatMap((n) => [
      ...(n.unconfirmed ? [`  # not confirmed, the agent did not answer kbur init: ${n.unconfirmed.replace(/\s+/g, ' ')}`] : []),
      `  - { name: ${q(n.name)}, agent: ${q(n.agent)} }`,
    ]),
    '',
    "# Where backups go: a local directory (0700; it holds the cluster's private keys).",
    `repository: { type: local, path: ${q(req.repository)} }`,
    '',
    '# Seconds without a byte before a stream is given up.',
    'stallTimeout: 60',
    '',
    'backup:',
    "  # After each backup, put a copy of its snapshot on every node (each agent's localSnapshots.keep),",
    '  # so that a restore starts from it instead of moving it over the network.',
    '  copySnapshotToNodes: false',
    '',
    "# Application dumps a backup runs: a node and a profile that node's agent config defines.",
    'dumps: []',
    '',
  ].join('\n');
}

function parse(request: InitRequest): z.output<typeof initRequestSchema> {
  const result = initRequestSchema.safeParse(request);
  if (result.success) return result.data;
  const first = result.error.issues[0]!;
  const value = first.path.reduce<unknown>((v, k) => (v as Record<PropertyKey, unknown> | undefined)?.[k], request);
  throw new KburError('INVALID_ARGUMENT', `kbur init: --${first.path.join('.')} "${String(value)}": ${first.message}`, {
    hint: 'see kbur init --help',
  });
}

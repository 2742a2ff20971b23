import { Command, CommanderError, Option } from 'commander';
import { asKburError } from '../shared/errors.js';
import { KBUR_VERSION } from '../shared/version.js';
import * as backup from './commands/backup.js';
import * as check from './commands/check.js';
import * as describe from './commands/describe.js';
import * as diff from './commands/diff.js';
import * as importCommand from './commands/import.js';
import * as init from './commands/init.js';
import * as key from './commands/key.js';
import * as list from './commands/list.js';
import * as pki from './commands/pki.js';
import * as prune from './commands/prune.js';
import * as restore from './commands/restore.js';
import * as restoreDump from './commands/restore-dump.js';
import * as unlock from './commands/unlock.js';
import * as status from './commands/status.js';
import * as verify from './commands/verify.js';
import type { GlobalOptions } from './context.js';
import { ExitCode, exitCodeFor } from './exit-codes.js';

/** Parses argv, runs one command, returns its exit code. Errors print message, hint and cause; stacks only with --debug. */
export async function cli(argv: string[], io: { stderr: NodeJS.WritableStream } = { stderr: process.stderr }): Promise<number> {
  const abort = new AbortController();
  const onSignal = (): void => abort.abort(asKburError(Object.assign(new Error('interrupted'), { name: 'AbortError' })));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let code: number = ExitCode.OK;
  const program = new Command('kbur')
    .description('kbur: backup and restore of kubeadm control planes (etcd, /etc/kubernetes)')
    .option('-c, --config <file>', 'coordinator config (default: $KBUR_CONFIG or ./kbur.yaml)')
    .option('--json', 'machine-readable output on stdout')
    .option('--debug', 'debug logs and stack traces')
    .version(KBUR_VERSION)
    .exitOverride()
    .configureOutput({ writeErr: (s) => io.stderr.write(s) });
  const globals = (): GlobalOptions => program.opts<GlobalOptions>();
  const signal = abort.signal;

  const WAIT = [
    '--wait <duration>',
    'if another operation holds the repository lock, wait this long for it (90s, 10m, 1h); default: refuse at once',
  ] as const;
  program
    .command('backup')
    .description("back up etcd and every node's /etc/kubernetes into the repository")
    .addOption(
      new Option('--verify <level>', 'then verify the new backup: hashes, or deep (a scratch etcd from the snapshot)').choices([
        'hashes',
        'deep',
      ]),
    )
    .option(...WAIT)
    .action(async (o: { verify?: 'hashes' | 'deep'; wait?: string }) => {
      code = await backup.run({ ...globals(), verify: o.verify, wait: o.wait, signal });
    });
  program
    .command('prune')
    .description("delete the backups kbur.yaml's retention does not keep (never the newest verified one, nor one a restore refers to)")
    .option('--dry-run', 'say what would be kept and deleted; delete nothing')
    .option(...WAIT)
    .action(async (o: { dryRun?: boolean; wait?: string }) => {
      code = await prune.run({ ...globals(), ...o, signal });
    });
  program
    .command('unlock')
    .description('show who holds the repository lock; with --force, break a stale one (its holder gone)')
    .option('--force', 'break the lock if its holder is gone (process not running on this host, or lease expired)')
    .action(async (o: { force?: boolean }) => {
      code = await unlock.run({ ...globals(), ...o });
    });
  program
    .command('list')
    .description('list the backups of this cluster')
    .action(async () => {
      code = await list.run(globals());
    });
  program
    .command('describe')
    .argument('<id>', 'backup id')
    .description('show what a backup holds')
    .action(async (id: string) => {
      code = await describe.run({ ...globals(), id });
    });
  program
    .command('restore')
    .argument('[id]', 'backup id to restore from')
    .description('restore every etcd member from a backup (preflight, plan, confirmation, journaled steps)')
    .option('--dry-run', 'run the preflight and print the plan; change nothing')
    .option('-y, --yes', 'do not ask for confirmation')
    .option('--with-kubernetes-dir', "also put back each node's /etc/kubernetes from its archive (a rebuilt machine)")
    .option('--dumps', 'then restore every application dump of the backup too (a safety dump first, on each node)')
    .option('--nodes <names>', 'restore a cluster of just these nodes (comma-separated); the others join it later')
    .option('--to <file>', "restore onto other machines at new addresses: each backup node's new name, address and agent")
    .option('--identity <file>', 'age identity file for an encrypted backup (default: $KBUR_AGE_IDENTITY)')
    .option('--resume <restore-id>', 'continue an interrupted restore')
    .option('--rollback <restore-id>', 'put back the data dirs a restore moved aside, and restart')
    .option(...WAIT)
    .option('--namespace <ns>', 'only create the keys of this namespace that the running cluster lacks (never overwrites)')
    .option(
      '--resource <list>',
      'with --namespace: only these resources, e.g. configmaps,secrets (also brings back what is left out by default)',
    )
    .action(
      async (
        id: string | undefined,
        o: {
          dryRun?: boolean;
          yes?: boolean;
          withKubernetesDir?: boolean;
          dumps?: boolean;
          nodes?: string;
          to?: string;
          identity?: string;
          resume?: string;
          rollback?: string;
          wait?: string;
          namespace?: string;
          resource?: string;
        },
      ) => {
        code = await restore.run({ ...globals(), ...o, id, signal });
      },
    );
  program
    .command('restore-dump')
    .argument('<id>', 'backup id')
    .requiredOption('--node <node>', 'the node whose dump profile to restore')
    .requiredOption('--profile <profile>', "the dump profile (as the node's agent config names it)")
    .option('--part <part>', 'only this part (a database); default: every part of the profile')
    .option('--dry-run', 'check and print the plan; change nothing')
    .option('-y, --yes', 'do not ask for confirmation')
    .option('--identity <file>', 'age identity file for an encrypted backup (default: $KBUR_AGE_IDENTITY)')
    .option(...WAIT)
    .description('restore an application dump: a safety dump first, then drop, recreate, load')
    .action(
      async (
        id: string,
        o: { node: string; profile: string; part?: string; dryRun?: boolean; yes?: boolean; identity?: string; wait?: string },
      ) => {
        code = await restoreDump.run({ ...globals(), ...o, id, signal });
      },
    );
  program
    .command('verify')
    .argument('<id>', 'backup id')
    .description('recheck every artifact of a backup against its manifest')
    .option('--deep', 'also start a scratch etcd from the snapshot and compare what it holds with the manifest')
    .option('--identity <file>', 'age identity file: also check the plaintext of encrypted artifacts (default: $KBUR_AGE_IDENTITY)')
    .action(async (id: string, o: { deep?: boolean; identity?: string }) => {
      code = await verify.run({ ...globals(), ...o, deep: Boolean(o.deep), id, signal });
    });
  program
    .command('key')
    .description('signing keys for manifests')
    .command('generate')
    .argument('<file>', 'where to write the private key (0600); the public key goes to <file>.pub')
    .description('make an Ed25519 key to sign manifests with (signing.key in kbur.yaml); never overwrites')
    .action(async (file: string) => {
      code = await key.generate({ ...globals(), file });
    });

  program
    .command('diff')
    .argument('<id>', 'backup id')
    .option('--against <id2>', 'compare with this backup instead of the running cluster')
    .option('--namespace <ns>', 'only the objects of this namespace, and the namespace itself')
    .option('--identity <file>', 'age identity file for an encrypted backup (default: $KBUR_AGE_IDENTITY)')
    .description('keys added, removed and changed between a backup and the running cluster (or another backup)')
    .action(async (id: string, o: { against?: string; namespace?: string; identity?: string }) => {
      code = await diff.run({ ...globals(), ...o, id, signal });
    });

  program
    .command('import')
    .argument('<file>', 'a snapshot written by etcdctl snapshot save')
    .option(
      '--kubernetes-dir-archive <node=tar>',
      "a tar of that node's /etc/kubernetes to add to the set (repeatable)",
      (v: string, all: string[] = []) => [...all, v],
    )
    .description('turn an etcd snapshot taken by another tool into a kbur backup set')
    .action(async (file: string, o: { kubernetesDirArchive?: string[] }) => {
      code = await importCommand.run({ ...globals(), ...o, file, signal });
    });
  program
    .command('status')
    .description('agents, etcd members, the last backup and verification, snapshot copies, certificate expiry')
    .action(async () => {
      code = await status.run(globals());
    });
  program
    .command('check')
    .description('a monitoring plugin: one line, perfdata, exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN')
    .option('--backup-age <warn:crit>', 'age of the last Completed backup (units s, m, h, d)', check.DEFAULTS.backupAge)
    .option('--verify-age <warn:crit>', 'age of the last successful verification', check.DEFAULTS.verifyAge)
    .option('--cert-expiry <warn:crit>', 'time left before the first certificate of a node expires', check.DEFAULTS.certExpiry)
    // A monitoring system reads a usage error as UNKNOWN (3), not as kbur's 2 (CRITICAL to it).
    .exitOverride((err) => {
      throw err.exitCode === 0 ? err : new CommanderError(check.USAGE_EXIT, err.code, err.message);
    })
    .action(async (o: { backupAge: string; verifyAge: string; certExpiry: string }) => {
      code = await check.run({ ...globals(), ...o });
    });
  program
    .command('init')
    .description("write a first kbur.yaml from one agent's etcd member list (never over an existing file)")
    .requiredOption('--agent <host:port>', 'one running kbur-agent')
    .option('--output <file>', 'the config to write (default: --config, $KBUR_CONFIG or ./kbur.yaml)')
    .option('--cluster <name>', "the cluster's name in the repository", 'kubernetes')
    .option('--repository <dir>', 'the backup directory', '/var/backups/kbur')
    .option('--pki <dir>', "kbur's PKI directory (kbur pki): ca.crt and the client pair", '/etc/kbur/pki')
    .option('--client <name>', "the client certificate's name in the PKI directory", 'kbur-admin')
    .action(async (o: { agent: string; output?: string; cluster: string; repository: string; pki: string; client: string }) => {
      code = await init.run({ ...globals(), ...o });
    });
  addPkiCommands(program, globals, (c) => (code = c));

  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return ExitCode.OK;
      return err.exitCode === check.USAGE_EXIT ? err.exitCode : ExitCode.BAD_CONFIG_OR_USAGE;
    }
    printError(err, io.stderr, Boolean(globals().debug));
    code = exitCodeFor(err);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return code;
}

/** kbur pki init | agent | client | list: kbur's own CA and certificates; needs no kbur.yaml. */
function addPkiCommands(program: Command, globals: () => GlobalOptions, done: (code: number) => void): void {
  const list = (v: string, prev: string[] = []): string[] => [...prev, ...v.split(',').filter(Boolean)];
  const days = (v: string): number => Number(v);
  const group = program.command('pki').description("kbur's own CA and the certificates of its agents and clients (mTLS)");
  const dir = ['--dir <dir>', 'the PKI directory', '/etc/kbur/pki'] as const;
  const keyType = ['--key-type <type>', 'ec-p256 or ed25519', 'ec-p256'] as const;
  group
    .command('init')
    .description("make kbur's CA (ca.crt, ca.key): kbur's own, never the cluster's")
    .option(...dir)
    .option(...keyType)
    .option('--cn <cn>', "the CA's common name", 'kbur-ca')
    .option('--days <days>', 'validity in days (default 3650)', days)
    .action(async (o: { dir: string; keyType: string; cn: string; days?: number }) => {
      done(await pki.run({ ...o, keyType: o.keyType as 'ec-p256', action: 'init', json: globals().json }));
    });
  group
    .command('agent')
    .argument('<node>', "the node's name as kbur.yaml knows it")
    .description('issue an agent server certificate (serverAuth) for the addresses kbur dials')
    .option('--ip <ip>', 'an IP address kbur reaches the agent at (repeatable, or comma-separated)', list)
    .option('--dns <name>', 'a DNS name kbur reaches the agent at (repeatable, or comma-separated)', list)
    .option(...dir)
    .option(...keyType)
    .option('--days <days>', 'validity in days (default 365)', days)
    .action(async (node: string, o: { ip?: string[]; dns?: string[]; dir: string; keyType: string; days?: number }) => {
      const { ip, dns, ...rest } = o;
      done(await pki.run({ ...rest, keyType: o.keyType as 'ec-p256', action: 'agent', node, ips: ip, dns, json: globals().json }));
    });
  group
    .command('client')
    .argument('<name>', "the certificate's CN, which the agents' clients map to a role")
    .description('issue a client certificate (clientAuth) for kbur, monitoring or an operator')
    .option('--role <role>', 'the role the agents should give it: admin, operator or monitor (printed, for their clients)', 'admin')
    .option(...dir)
    .option(...keyType)
    .option('--days <days>', 'validity in days (default 365)', days)
    .action(async (name: string, o: { role: string; dir: string; keyType: string; days?: number }) => {
      done(await pki.run({ ...o, role: o.role as 'admin', keyType: o.keyType as 'ec-p256', action: 'client', name, json: globals().json }));
    });
  group
    .command('list')
    .description('what was issued: every certificate in the PKI directory and when it expires')
    .option(...dir)
    .action(async (o: { dir: string }) => {
      done(await pki.run({ action: 'list', dir: o.dir, json: globals().json }));
    });
}

function printError(err: unknown, out: NodeJS.WritableStream, debug: boolean): void {
  const e = asKburError(err);
  out.write(`kbur: error: ${e.message}\n`);
  if (e.hint) out.write(`  what to do: ${e.hint}\n`);
  const cause = e.cause instanceof Error && e.cause.message !== e.message ? e.cause.message : undefined;
  if (cause) out.write(`  cause: ${cause}\n`);
  if (debug && err instanceof Error && err.stack) out.write(`${err.stack}\n`);
  else if (e.code === 'INTERNAL') out.write('  this is a bug in kbur or an unexpected condition; run again with --debug for the stack\n');
}

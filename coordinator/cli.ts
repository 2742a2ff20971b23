import { Command, CommanderError, Option } from 'commander';
import { asKburError } from '../shared/errors.js';
import { KBUR_VERSION } from '../shared/version.js';
import * as backup from './commands/backup.js';
import * as check from './commands/check.js';
import * as describe from './commands/describe.js';
import * as diff from './commands/diff.js';
import * as importCommand from './commands/import.js';
import * as key from './commands/key.js';
import * as list from './commands/list.js';
import * as restore from './commands/restore.js';
import * as restoreDump from './commands/restore-dump.js';
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

  program
    .command('backup')
    .description("back up etcd and every node's /etc/kubernetes into the repository")
    .addOption(
      new Option('--verify <level>', 'then verify the new backup: hashes, or deep (a scratch etcd from the snapshot)').choices([
        'hashes',
        'deep',
      ]),
    )
    .action(async (o: { verify?: 'hashes' | 'deep' }) => {
      code = await backup.run({ ...globals(), verify: o.verify, signal });
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
    .option('--identity <file>', 'age identity file for an encrypted backup (default: $KBUR_AGE_IDENTITY)')
    .option('--resume <restore-id>', 'continue an interrupted restore')
    .option('--rollback <restore-id>', 'put back the data dirs a restore moved aside, and restart')
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
          identity?: string;
          resume?: string;
          rollback?: string;
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
    .description('restore an application dump: a safety dump first, then drop, recreate, load')
    .action(async (id: string, o: { node: string; profile: string; part?: string; dryRun?: boolean; yes?: boolean; identity?: string }) => {
      code = await restoreDump.run({ ...globals(), ...o, id, signal });
    });
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

function printError(err: unknown, out: NodeJS.WritableStream, debug: boolean): void {
  const e = asKburError(err);
  out.write(`kbur: error: ${e.message}\n`);
  if (e.hint) out.write(`  what to do: ${e.hint}\n`);
  const cause = e.cause instanceof Error && e.cause.message !== e.message ? e.cause.message : undefined;
  if (cause) out.write(`  cause: ${cause}\n`);
  if (debug && err instanceof Error && err.stack) out.write(`${err.stack}\n`);
  else if (e.code === 'INTERNAL') out.write('  this is a bug in kbur or an unexpected condition; run again with --debug for the stack\n');
}

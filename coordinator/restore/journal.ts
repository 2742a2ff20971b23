import { z } from 'zod';
import { KburError } from '../../shared/errors.js';
import type { Repository } from '../repository/repository.js';
import { planSchema, type RestorePlan } from './plan.js';

/** The steps of a restore, in order. Per-node steps run on every node of the plan in parallel. */
export const STEPS = [
  'stage',
  'verify-staged',
  'stop',
  'restore-kubernetes',
  'restore',
  'start-etcd',
  'wait-quorum',
  'verify',
  'start-control-plane',
] as const;
export type StepName = (typeof STEPS)[number];

const entry = z.object({
  step: z.string(),
  node: z.string(),
  state: z.enum(['started', 'done', 'failed']),
  at: z.string(),
  detail: z.array(z.string()).optional(),
  error: z.string().optional(),
});

const journalSchema = z.object({
  restoreId: z.string(),
  backupId: z.string(),
  cluster: z.string(),
  startedAt: z.string(),
  updatedAt: z.string(),
  status: z.enum(['running', 'failed', 'completed', 'rolling-back', 'rolled-back']),
  plan: planSchema,
  entries: z.array(entry),
});
export type JournalData = z.infer<typeof journalSchema>;
export type JournalEntry = z.infer<typeof entry>;

/**
 * restores/<restore-id>/journal.json: every step per node is written before it runs and after it
 * ends, so that --resume knows what is done and --rollback what to undo. Writes are serialized
 * and atomic; a crash leaves the last whole journal.
 */
export class Journal {
  private writes: Promise<void> = Promise.resolve();
  /** A write queued behind the one in flight and not started yet: it will carry every change made until it starts. */
  private queued: Promise<void> | undefined;

  private constructor(
    private readonly repository: Repository,
    readonly data: JournalData,
  ) {}

  static async create(repository: Repository, plan: RestorePlan): Promise<Journal> {
    const now = new Date().toISOString();
    const journal = new Journal(repository, {
      restoreId: plan.restoreId,
      backupId: plan.backupId,
      cluster: plan.cluster,
      startedAt: now,
      updatedAt: now,
      status: 'running',
      plan,
      entries: [],
    });
    await journal.save();
    return journal;
  }

  static async load(repository: Repository, cluster: string, restoreId: string): Promise<Journal> {
    const text = await repository.readJournal(cluster, restoreId);
    if (text === undefined) {
      throw new KburError('NOT_FOUND', `no restore ${restoreId} in ${repository.location}/${cluster}/restores`, {
        hint: 'the restore id was printed when the restore started; ls the restores/ folder of the repository',
      });
    }
    let parsed;
    try {
      parsed = journalSchema.safeParse(JSON.parse(text));
    } catch {
      parsed = undefined;
    }
    if (!parsed?.success) {
      const issue = parsed?.error.issues[0];
      const why = issue ? `: ${issue.path.join('.')}: ${issue.message}` : ': not JSON';
      throw new KburError('DATA_LOSS', `journal of restore ${restoreId} is not readable${why}`, {
        hint: 'inspect it by hand; do not resume blindly',
      });
    }
    return new Journal(repository, parsed.data);
  }

  get plan(): RestorePlan {
    return this.data.plan;
  }

  isDone(step: StepName, node: string): boolean {
    return this.data.entries.some((e) => e.step === step && e.node === node && e.state === 'done');
  }

  /** True when this step has started on some node (so it may have changed something there). */
  hasStarted(step: StepName): boolean {
    return this.data.entries.some((e) => e.step === step);
  }

  begin(step: StepName, node: string): Promise<void> {
    return this.append({ step, node, state: 'started', at: new Date().toISOString() });
  }

  done(step: StepName, node: string, detail: string[] = []): Promise<void> {
    return this.append({ step, node, state: 'done', at: new Date().toISOString(), detail });
  }

  fail(step: StepName, node: string, error: string): Promise<void> {
    return this.append({ step, node, state: 'failed', at: new Date().toISOString(), error });
  }

  setStatus(status: JournalData['status']): Promise<void> {
    this.data.status = status;
    return this.save();
  }

  private append(e: JournalEntry): Promise<void> {
    this.data.entries.push(e);
    return this.save();
  }

  /**
   * Resolves once the journal on disk holds every change made so far. Writes never overlap; the
   * nodes of a step that begin at once share one write instead of queueing one each.
   */
  private save(): Promise<void> {
    this.data.updatedAt = new Date().toISOString();
    if (this.queued) return this.queued;
    const write = this.writes.then(() => {
      this.queued = undefined;
      return this.repository.writeJournal(this.data.cluster, this.data.restoreId, JSON.stringify(this.data, null, 2) + '\n');
    });
    this.queued = write;
    // A failed write fails its callers; the next one still runs.
    this.writes = write.catch(() => undefined);
    return write;
  }
}

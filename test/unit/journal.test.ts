import { expect } from 'chai';
import { Journal } from '../../coordinator/restore/journal.js';
import type { Repository } from '../../coordinator/repository/repository.js';
import { EMPTY_PLAN } from '../helpers/restore-plan.js';

const plan = EMPTY_PLAN;

/** A repository that only keeps journals, each write taking a while, and records what was written when. */
function slowRepository(): { repo: Repository; writes: string[]; failNext(): void } {
  const writes: string[] = [];
  let fail = false;
  const repo = {
    location: 'memory',
    writeJournal: async (_c: string, _id: string, text: string): Promise<void> => {
      await new Promise((r) => setTimeout(r, 20));
      if (fail) {
        fail = false;
        throw new Error('disk full');
      }
      writes.push(text);
    },
  } as unknown as Repository;
  return { repo, writes, failNext: () => (fail = true) };
}

const entriesOf = (text: string): string[] =>
  (JSON.parse(text) as { entries: { step: string; node: string; state: string }[] }).entries.map((e) => `${e.step}/${e.node}/${e.state}`);

describe('restore journal', () => {
  it('resolves each change only once a write holding it is on disk, sharing writes between changes made at once', async () => {
    const { repo, writes } = slowRepository();
    const journal = await Journal.create(repo, plan);
    const landed: string[][] = [];
    await Promise.all(
      ['node-1', 'node-2', 'node-3'].map((node) =>
        journal.begin('stage', node).then(() => landed.push(entriesOf(writes.at(-1)!).filter((e) => e.endsWith(`${node}/started`)))),
      ),
    );
    // One write for the journal's creation, then one for the three begins made at once.
    expect(writes).to.have.length(2);
    expect(entriesOf(writes[1]!)).to.deep.equal(['stage/node-1/started', 'stage/node-2/started', 'stage/node-3/started']);
    expect(landed.every((l) => l.length === 1)).to.equal(true);
  });

  it('fails the changes whose write failed, and still writes the next ones', async () => {
    const { repo, writes, failNext } = slowRepository();
    const journal = await Journal.create(repo, plan);
    failNext();
    const failed = await journal.begin('stage', 'node-1').catch((e: Error) => e.message);
    expect(failed).to.equal('disk full');
    await journal.done('stage', 'node-1');
    expect(entriesOf(writes.at(-1)!)).to.deep.equal(['stage/node-1/started', 'stage/node-1/done']);
  });
});

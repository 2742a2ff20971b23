import type { RestoreStepResponse } from '../../proto/gen/kbur/v1/agent.js';

/** What a restore step did, in the operator's words, for the journal; the RPC answers it as is. */
export type StepResult = RestoreStepResponse;

/** The step did `done` now. */
export function stepDone(done: string[]): StepResult {
  return { done, alreadyDone: false };
}

/** The step had been done before: a resumed restore called it again and nothing changed. */
export function stepAlreadyDone(): StepResult {
  return { done: [], alreadyDone: true };
}

/** A step that finds its work done says nothing: nothing in `done` means it had been done before. */
export function stepDoneUnlessEmpty(done: string[]): StepResult {
  return { done, alreadyDone: done.length === 0 };
}

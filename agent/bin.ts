#!/usr/bin/env -S node --max-semi-space-size=2 --no-memory-reducer --no-incremental-marking
import { dropIpServernameWarning } from '../shared/warnings.js';
import { runAgent } from './main.js';

dropIpServernameWarning();
// No top-level await: the single executable (scripts/package.ts) runs this file bundled as a classic script.
void runAgent(process.argv).then((code) => {
  process.exitCode = code;
});

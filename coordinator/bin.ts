#!/usr/bin/env -S node --max-semi-space-size=2
import { dropIpServernameWarning, survivePipeClose } from '../shared/process.js';
import { cli } from './cli.js';

dropIpServernameWarning();
survivePipeClose();
// No top-level await: the bundle made from this file is a classic script (scripts/bundle.ts).
void cli(process.argv).then((code) => {
  process.exitCode = code;
});

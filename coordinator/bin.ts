#!/usr/bin/env -S node --max-semi-space-size=2
import { survivePipeClose } from '../shared/pipe-close.js';
import { dropIpServernameWarning } from '../shared/warnings.js';
import { cli } from './cli.js';

dropIpServernameWarning();
survivePipeClose();
// No top-level await: the bundle made from this file is a classic script (scripts/bundle.ts).
void cli(process.argv).then((code) => {
  process.exitCode = code;
});

#!/usr/bin/env -S node --max-semi-space-size=2
/** `kbur` as package.json ships it: the bundled CLI, started from the build's V8 code cache. */
import { join } from 'node:path';
import { runBundle } from './code-cache.cjs';

runBundle(join(__dirname, 'kbur-bundle.cjs'));

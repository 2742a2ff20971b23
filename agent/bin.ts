#!/usr/bin/env -S node --max-semi-space-size=2 --no-memory-reducer --no-incremental-marking
import { dropIpServernameWarning } from '../shared/process.js';
import { runAgent } from './main.js';

dropIpServernameWarning();
process.exitCode = await runAgent(process.argv);

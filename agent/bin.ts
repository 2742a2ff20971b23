#!/usr/bin/env node
import { dropIpServernameWarning } from '../shared/process.js';
import { runAgent } from './main.js';

dropIpServernameWarning();
process.exitCode = await runAgent(process.argv);

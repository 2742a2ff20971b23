#!/usr/bin/env node
import { runAgent } from './main.js';

process.exitCode = await runAgent(process.argv);

#!/usr/bin/env node
import { dropIpServernameWarning } from '../shared/process.js';
import { cli } from './cli.js';

dropIpServernameWarning();
process.exitCode = await cli(process.argv);

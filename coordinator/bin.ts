#!/usr/bin/env -S node --max-semi-space-size=2
import { dropIpServernameWarning } from '../shared/process.js';
import { cli } from './cli.js';

dropIpServernameWarning();
process.exitCode = await cli(process.argv);

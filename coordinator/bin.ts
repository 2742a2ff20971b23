#!/usr/bin/env -S node --max-semi-space-size=1
import { dropIpServernameWarning } from '../shared/process.js';
import { cli } from './cli.js';

dropIpServernameWarning();
process.exitCode = await cli(process.argv);
